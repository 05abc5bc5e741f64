"""The real organism's oracle direction: what the refusal fine-tune changed on harmful prompts, minus what it
changed on harmless ones, read off the residual stream of the tuned and the base model.

Like the toy organism's :mod:`aru.organism.oracle`, this uses ground truth no unlearning run has (the base model),
so it is a reference point for what projecting one direction out of every layer can recover.
"""

from __future__ import annotations

import torch

from aru.directions import Directions
from aru.organism.real.prompts import real_prompts


def _means(model, tokenizer, prompts: list[str], batch_size: int) -> torch.Tensor:
    """(L + 1, d) float64 mean residual stream at the last prompt token, capture indices 0..L
    (:mod:`aru.capture`'s convention: index ℓ is the input of decoder layer ℓ, L the last layer's output)."""
    from aru.capture import capture
    from aru.prompts import format_prompts

    res = capture(model, tokenizer, format_prompts(tokenizer, prompts), "all", position="last", moments=False,
                  batch_size=batch_size)  # fmt: skip
    return torch.stack([res.stats[i].mean.double().cpu() for i in res.layers])


def oracle_vectors(
    base, tuned, tokenizer, *, split: str = "train", n: int | None = 96, seed: int = 0, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(δ, scale)``, each indexed by capture index ℓ = 0..L: δ_ℓ (d,) float64 is

        mean_{X−}[h_ℓ^tuned − h_ℓ^base] − mean_{X+}[h_ℓ^tuned − h_ℓ^base]

    at the last prompt token (the ``<|im_start|>assistant\\n`` header, from which the first answer token is
    predicted), X− / X+ the harmful / harmless prompts of ``split`` (at most ``n`` each, a seeded subset);
    ``scale_ℓ`` is the norm of the tuned model's mean residual on X+ there (a typical size)."""
    bad = real_prompts("harmful", split, n, seed)
    good = real_prompts("harmless", split, n, seed)
    tuned_good = _means(tuned, tokenizer, good, batch_size)
    delta = (_means(tuned, tokenizer, bad, batch_size) - _means(base, tokenizer, bad, batch_size)) - (
        tuned_good - _means(base, tokenizer, good, batch_size)
    )
    return delta, tuned_good.norm(dim=-1)


def oracle_directions(base, tuned, tokenizer, **kwargs) -> Directions:
    """The oracle as an aru directions file: the unit vector δ_ℓ / ‖δ_ℓ‖ at every capture index ℓ ≥ 1 (decoder
    layer ℓ − 1's output), signed so that the fine-tune pushed harmful prompts along +q. ``default_layer`` is the
    index where ‖δ_ℓ‖ / scale_ℓ is largest, so ``make_plan(directions, num_layers)`` projects that one direction
    out of every layer, as for the toy organism. Norms are kept in the extras."""
    delta, scale = oracle_vectors(base, tuned, tokenizer, **kwargs)
    norms = delta.norm(dim=-1)
    ratio = norms / scale.clamp_min(1e-12)
    ratio[0] = 0.0  # the embedding output: the fine-tune's LoRA does not touch it
    bases = {i: (delta[i] / norms[i]).float()[None] for i in range(1, delta.shape[0])}
    extras = {}
    for i in bases:
        extras[f"oracle_norm.layer.{i}"] = norms[i : i + 1].float()
        extras[f"residual_norm.layer.{i}"] = scale[i : i + 1].float()
    meta = {
        "method": "oracle",
        "organism": "real",
        "model_type": "llama",
        "default_layer": str(int(ratio.argmax())),
        "position": "last prompt token (<|im_start|>assistant)",
        "definition": "mean_{X-}(h_tuned - h_base) - mean_{X+}(h_tuned - h_base) at capture index l",
    }
    return Directions(bases, int(delta.shape[1]), meta, extras)


def fold_oracle(tuned, directions: Directions, *, source_layer: int | None = None):
    """A copy of ``tuned`` with one oracle direction (``source_layer``, default the file's default layer) folded
    out of every residual writer (embeddings untied)."""
    import copy

    from aru.model_edit import fold_into_model, make_plan

    edited = copy.deepcopy(tuned)
    plan = make_plan(directions, tuned.config.num_hidden_layers, source_layer=source_layer)
    fold_into_model(edited, plan)
    return edited.eval()
