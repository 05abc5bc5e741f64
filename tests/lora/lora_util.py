"""Helpers of the adapter tests: tiny checkpoints, the folded reference, logits of base + adapter."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from tiny import tiny_model

from aru.checkpoint import edit_checkpoint
from aru.directions import Directions, orthonormalize, save_directions
from aru.lora import export_adapter
from aru.lora_peft import load_with_adapter
from aru.verify import load_float32

RTOL = 1e-5  # float32: max |Δlogit| ≤ 1e-5 · max |logit|


def random_basis(d: int, k: int = 2, seed: int = 1) -> torch.Tensor:
    return orthonormalize(torch.randn(k, d, generator=torch.Generator().manual_seed(seed)))


def save_tiny(model_type: str, folder: Path, *, max_shard_size=None, **kw) -> torch.nn.Module:
    model = tiny_model(model_type, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if max_shard_size:
            model.save_pretrained(folder, max_shard_size=max_shard_size)
        else:
            model.save_pretrained(folder)
    return model


def tiny_case(model_type: str, tmp: Path, *, k: int = 2, **kw) -> tuple[Path, Path, int]:
    """(checkpoint folder, directions file, vocab size) of a tiny random model with a random basis."""
    model = save_tiny(model_type, tmp / "in", **kw)
    d = model.config.hidden_size
    dpath = save_directions(Directions({"all": random_basis(d, k)}, d, {"method": "test"}), tmp / "d.safetensors")
    return tmp / "in", dpath, model.config.vocab_size


def ids_for(vocab: int, batch: int = 2, seq: int = 12) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def logits(folder: Path, ids: torch.Tensor, model_type: str) -> torch.Tensor:
    return load_float32(folder, model_type)(ids).logits


@torch.no_grad()
def adapter_logits(base: Path, adapter: Path, ids: torch.Tensor, *, merge: bool) -> torch.Tensor:
    return load_with_adapter(base, adapter, merge=merge)(ids).logits


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


def compare(src: Path, dpath: Path, tmp: Path, ids: torch.Tensor, model_type: str, **kw) -> dict[str, float]:
    """Export the adapter and fold the checkpoint with the same settings; relative max |Δlogit| of base + adapter
    (PeftModel, merged) against the folded checkpoint, and of the folded checkpoint against the base."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter_kw = {key: kw.pop(key) for key in ("adapter_bias", "adapter_dtype") if key in kw}
        edit_checkpoint(src, dpath, tmp / "ckpt", progress=False, **kw)
        export_adapter(src, dpath, tmp / "adapter", **kw, **adapter_kw)
        folded = logits(tmp / "ckpt", ids, model_type)
        return {
            "peft": rel(adapter_logits(src, tmp / "adapter", ids, merge=False), folded),
            "merged": rel(adapter_logits(src, tmp / "adapter", ids, merge=True), folded),
            "edit": rel(logits(src, ids, model_type), folded),
        }
