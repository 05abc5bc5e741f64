"""Fixtures for the GGUF end-to-end tests: the shipped organism edited with its oracle direction."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session")
def edited_organism(tmp_path_factory):
    """(tuned folder, edited folder): the shipped fine-tuned organism with its oracle direction folded out by aru's
    streaming editor (embeddings untied, as by default)."""
    import aru.organism
    from aru.checkpoint import edit_checkpoint

    tuned = aru.organism.shipped("tuned")
    out = tmp_path_factory.mktemp("gguf") / "edited"
    edit_checkpoint(tuned, aru.organism.oracle_directions(), out, progress=False)
    return tuned, out
