"""Fixtures for the GGUF end-to-end tests: the shipped organism edited with its oracle direction."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def converter():
    """llama.cpp's converter from aru's cache; fetched (pip download, ~10 s) only with ARU_TEST_FETCH_CONVERTER=1."""
    import aru.gguf

    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python==0.3.36 (pip install 'aru[gguf]')")
    try:
        return aru.gguf.ensure_converter(install=os.environ.get("ARU_TEST_FETCH_CONVERTER") == "1")
    except aru.gguf.GgufError as exc:
        pytest.skip(f"llama.cpp converter not available ({exc}); set ARU_TEST_FETCH_CONVERTER=1 to fetch it")


def fold_projection(model, q):
    """Project the unit rows of ``q`` (k, d) out of every residual writer of a Llama: W ← (I − QᵀQ) W."""
    import torch

    q = q.double()
    with torch.no_grad():
        emb = model.model.embed_tokens.weight  # (vocab, d)
        emb.copy_((emb.double() - emb.double() @ q.T @ q).float())
        for layer in model.model.layers:
            for w in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight):  # (d, d_in)
                w.copy_((w.double() - q.T @ (q @ w.double())).float())


@pytest.fixture(scope="session")
def edited_organism(tmp_path_factory):
    """(tuned folder, edited folder): the shipped fine-tuned organism with its oracle direction folded out."""
    import torch
    from transformers import AutoModelForCausalLM

    import aru.organism

    tuned = aru.organism.shipped("tuned")
    dirs = aru.organism.oracle_directions()
    layer = dirs.metadata.get("default_layer", max(k for k in dirs.bases if k != "all"))
    q = dirs.bases[int(layer)]  # (1, d)
    out = tmp_path_factory.mktemp("gguf") / "edited"
    shutil.copytree(tuned, out)
    model = AutoModelForCausalLM.from_pretrained(tuned, dtype=torch.float32)
    fold_projection(model, q)
    model.save_pretrained(out)
    return tuned, out
