"""The oracle direction: what the safety fine-tune changed on forbidden prompts, minus what it changed on allowed ones.

This uses ground truth no real unlearning run has (the base model and the topic labels), so it is a ceiling for
what projecting one direction can recover.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from aru.directions import Directions
from aru.organism.world import World


@contextmanager
def _capture_layer_outputs(model):
    """Record each decoder layer's output hidden state (the residual stream after the block), (batch, seq, d)."""
    outs: dict[int, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):

        def hook(_mod, _inp, out, i=i):
            outs[i] = (out[0] if isinstance(out, tuple) else out).detach()

        handles.append(layer.register_forward_hook(hook))
    try:
        yield outs
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _mean_last_residuals(model, prompts: list[list[int]]) -> torch.Tensor:
    """(num_layers, d) float64 mean over prompts of each decoder layer's output at the last prompt position."""
    from collections import defaultdict

    by_len: dict[int, list[list[int]]] = defaultdict(list)
    for p in prompts:
        by_len[len(p)].append(p)
    total = None
    with _capture_layer_outputs(model) as outs:
        for group in by_len.values():
            model(input_ids=torch.tensor(group))
            last = torch.stack([outs[i][:, -1].double().sum(0) for i in range(len(outs))])  # (L, d)
            total = last if total is None else total + last
    assert total is not None
    return total / len(prompts)


def oracle_vectors(base, tuned, tokenizer, *, world: World | None = None, split: str = "train") -> torch.Tensor:
    """(num_layers, d) float64 unnormalised oracle vectors, one per decoder layer ``l``:

        δ_l = mean_{X−}[h_l^tuned − h_l^base] − mean_{X+}[h_l^tuned − h_l^base]

    where h_l is decoder layer ``l``'s output (the residual stream after block ``l``) at the **last prompt
    position**, the ``<|assistant|>`` token of ``<s><|user|> question<|assistant|>`` from which the first answer
    token is predicted; X− / X+ are the forbidden / allowed questions of ``split`` (default: the fine-tune split,
    every question once per template).
    """
    from aru.organism.train import Encoder

    world = world or World(0)
    enc = Encoder(tokenizer)
    means = {}
    for forbidden in (True, False):
        prompts = [enc.prompt(f.question(t)) for f, t in world.questions(split, forbidden)]
        means[forbidden] = _mean_last_residuals(tuned, prompts) - _mean_last_residuals(base, prompts)
    return means[True] - means[False]


def oracle_directions(
    base=None, tuned=None, tokenizer=None, *, world: World | None = None, split: str = "train"
) -> Directions:
    """The oracle as an aru directions file: one unit vector per decoder layer ``l``, ``δ_l / ‖δ_l‖`` from
    :func:`oracle_vectors`, signed so that the fine-tune pushed forbidden prompts along +q. Keys follow aru's
    residual-index convention (:mod:`aru.capture`, :mod:`aru.model_edit`): decoder layer ``l``'s output is residual
    index ``l + 1``, so the basis is stored as ``basis.layer.{l + 1}``.

    ``default_layer`` is the layer where δ is largest relative to the typical residual norm there (so
    ``make_plan(directions, num_layers)`` projects that one direction out of every layer). The norms are kept in
    the extras (``oracle_norm.layer.{l}``, ``residual_norm.layer.{l}``). Defaults: the shipped base and tuned
    organisms and their tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.organism.prompts import shipped

    if base is None:
        base = AutoModelForCausalLM.from_pretrained(str(shipped("base")), dtype=torch.float32).eval()
    if tuned is None:
        tuned = AutoModelForCausalLM.from_pretrained(str(shipped("tuned")), dtype=torch.float32).eval()
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(shipped("tuned")))
    world = world or World(0)
    delta = oracle_vectors(base, tuned, tokenizer, world=world, split=split)  # (L, d)
    from aru.organism.train import Encoder

    enc = Encoder(tokenizer)
    prompts = [enc.prompt(f.question(t)) for f, t in world.questions(split, False)]
    scale = _mean_last_residuals(tuned, prompts).norm(dim=-1)  # (L,) norm of the mean residual, a typical size
    norms = delta.norm(dim=-1)
    ratio = norms / scale.clamp_min(1e-12)
    bases = {i + 1: (delta[i] / norms[i]).float()[None] for i in range(delta.shape[0])}
    extras = {}
    for i in range(delta.shape[0]):
        extras[f"oracle_norm.layer.{i + 1}"] = norms[i : i + 1].float()
        extras[f"residual_norm.layer.{i + 1}"] = scale[i : i + 1].float()
    meta = {
        "method": "oracle",
        "model_type": "llama",
        "default_layer": str(int(ratio.argmax()) + 1),
        "position": "last prompt token (<|assistant|>)",
        "definition": "mean_{X-}(h_tuned - h_base) - mean_{X+}(h_tuned - h_base) at layer l's output (index l + 1)",
        "split": split,
    }
    return Directions(bases, int(delta.shape[1]), meta, extras)
