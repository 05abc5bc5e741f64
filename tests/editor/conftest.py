from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny import tiny_model  # noqa: E402

from aru.directions import Directions, orthonormalize, save_directions  # noqa: E402


def random_basis(d: int, k: int = 2, seed: int = 1) -> torch.Tensor:
    return orthonormalize(torch.randn(k, d, generator=torch.Generator().manual_seed(seed)))


def save_tiny(model_type: str, folder: Path, **kw) -> torch.nn.Module:
    model = tiny_model(model_type, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return model


@pytest.fixture
def llama_ckpt(tmp_path):
    """A tiny tied-embedding Llama saved to disk, and a directions file for it."""
    folder = tmp_path / "llama"
    model = save_tiny("llama", folder)
    d = model.config.hidden_size
    dpath = save_directions(Directions({"all": random_basis(d)}, d, {"method": "test"}), tmp_path / "dirs.safetensors")
    return folder, dpath, model
