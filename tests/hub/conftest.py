from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    path = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


RECORD = {
    "input": {"path": None, "repo_id": "acme/tiny-chat", "revision": "abc123", "files": {}},
    "directions": {"path": "dirs.safetensors", "sha256": "f" * 64, "metadata": {"behaviour": "refusal", "k": 1}},
    "settings": {"layers": "all", "strength": 1.0, "keep_tied": False, "postnorm": False, "dtype": "float32"},
    "edited_tensors": ["model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight"],
    "extra": {
        "verify": {"max_abs_dlogit": 1.2e-5, "rel_dlogit": 3e-7, "leak": 1e-7, "passed": True, "approximate": False},
        "evaluation": [
            {"model": "tuned", "refusal_rate": 0.91, "kl_first_token": 0.0},
            {"model": "edited", "refusal_rate": 0.04, "kl_first_token": 0.12},
        ],
        "selection": {"layer": 1, "k": 1, "method": "diff-of-means", "strength": 1.0},
        "recipe": 'model = "acme/tiny-chat"\n[push]\nrepo_id = "you/x"\n',
    },
}


@pytest.fixture
def aru_output(tiny_model, tmp_path, monkeypatch):
    """A real aru edit of ``tiny_model`` (push re-derives it), its record dressed as a Hub model's run."""
    import torch

    from aru.checkpoint import edit_checkpoint
    from aru.directions import Directions, orthonormalize, save_directions
    from aru.provenance import read_provenance, rewrite_provenance

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    q = orthonormalize(torch.randn(1, 16, generator=torch.Generator().manual_seed(3)))
    dirs = save_directions(
        Directions({"all": q}, 16, {"behaviour": "refusal", "k": "1"}), tmp_path / "dirs.safetensors"
    )
    out = tmp_path / "out"
    edit_checkpoint(tiny_model, dirs, out, progress=False)
    data = read_provenance(out)
    data["input"].update(repo_id=RECORD["input"]["repo_id"], revision=RECORD["input"]["revision"])
    data["extra"] = dict(RECORD["extra"])
    rewrite_provenance(out, data)
    return out
