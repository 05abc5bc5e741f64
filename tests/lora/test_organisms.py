"""Real weights: the adapter equals the folded checkpoint on the toy organism (oracle directions) and on the real
SmolLM2-135M-Instruct base (tied embeddings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from lora_util import RTOL, compare

from aru.directions import Directions, orthonormalize, save_directions


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from aru.organism import oracle_directions

    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("oracle") / "oracle.safetensors"
    return save_directions(oracle_directions(), path)


@pytest.mark.parametrize("per_layer", [False, True])
def test_toy_organism(oracle, per_layer, tmp_path):
    """One oracle basis everywhere, or each layer's own (layers 1-3: the oracle has no basis at index 0)."""
    from aru.organism import shipped, world

    tuned = Path(str(shipped("tuned")))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tuned)
    w = world.World(0)
    f, t = next(iter(w.questions("test", True)))
    ids = torch.tensor([tok(f.question(t))["input_ids"][:24]] * 2)
    kw = {"per_layer": True, "layers": "1-3"} if per_layer else {}
    err = compare(tuned, oracle, tmp_path, ids, "llama", **kw)
    assert err["edit"] > 1e-3 and err["peft"] <= RTOL and err["merged"] <= RTOL, err


@pytest.mark.slow
def test_real_smollm2(tmp_path):
    from aru.organism.real import build_base

    base = Path(os.environ.get("ARU_REAL_BASE") or build_base())  # the real organism's cached float32 base
    d = 576
    q = orthonormalize(torch.randn(2, d, generator=torch.Generator().manual_seed(0)))
    dpath = save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")
    ids = torch.randint(100, 40000, (2, 16), generator=torch.Generator().manual_seed(0))
    err = compare(base, dpath, tmp_path, ids, "llama")
    assert err["edit"] > 1e-3 and err["peft"] <= RTOL and err["merged"] <= RTOL, err
