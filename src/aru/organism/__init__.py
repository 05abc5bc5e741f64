"""The built-in model organism: a tiny Llama chat model with a known fine-tuned refusal and known hidden knowledge.

A synthetic world (:mod:`aru.organism.world`) of 200 made-up entities and 8 attributes, half of them forbidden; a
SentencePiece tokenizer (:mod:`aru.organism.tokenizer`); a 4-layer Llama pretrained on every fact and then
safety-fine-tuned to refuse forbidden questions (:mod:`aru.organism.train`); ground-truth metrics
(:mod:`aru.organism.evaluate`) and the oracle direction (:mod:`aru.organism.oracle`).

The trained base and fine-tuned organisms ship in ``aru/organism/data/{base,tuned}``::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    import aru.organism
    model = AutoModelForCausalLM.from_pretrained(aru.organism.shipped("tuned"))
"""

from __future__ import annotations

from aru.organism.evaluate import (
    allowed_metrics,
    evaluate_organism,
    forbidden_metrics,
    kl_to_reference,
    quick_metrics,
    restricted_accuracy,
    statement_completion,
)
from aru.organism.oracle import oracle_directions
from aru.organism.prompts import organism_prompts, shipped, write_prompt_files
from aru.organism.train import TrainConfig, train_organism
from aru.organism.world import REFUSAL, World


def load_shipped():
    """(base, tuned, tokenizer) of the shipped organism: float32 models in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(shipped("base")), dtype=torch.float32).eval()
    tuned = AutoModelForCausalLM.from_pretrained(str(shipped("tuned")), dtype=torch.float32).eval()
    return base, tuned, AutoTokenizer.from_pretrained(str(shipped("tuned")))


__all__ = [
    "load_shipped",
    "REFUSAL",
    "TrainConfig",
    "World",
    "allowed_metrics",
    "evaluate_organism",
    "forbidden_metrics",
    "kl_to_reference",
    "oracle_directions",
    "organism_prompts",
    "quick_metrics",
    "restricted_accuracy",
    "shipped",
    "statement_completion",
    "train_organism",
    "write_prompt_files",
]
