"""Helpers of the safety suite (an importable module, not conftest: ``from conftest import`` clashes across folders)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from click.testing import CliRunner

SRC = Path(__file__).resolve().parents[2] / "src"
HIDDEN, LAYERS = 32, 4


def tree_sha(path: Path) -> dict[str, str]:
    """sha256 of every file below ``path`` (hidden ones too), or of ``path`` itself when it is a file."""
    path = Path(path)
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def listing(folder: Path) -> list[str]:
    """Every entry below ``folder`` (relative paths): a failed command must leave it as it was."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


def aru(*args) -> object:
    """Run the CLI in-process; a traceback never reaches the user."""
    from aru.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


def refused(res, *needles: str, code: int = 1) -> None:
    """The command failed with ``code`` and its message names every needle."""
    assert res.exit_code == code, (res.exit_code, res.output)
    for n in needles:
        assert str(n) in res.output, (n, res.output)


def aru_process(*args, env: dict | None = None) -> subprocess.Popen:
    """``aru ARGS`` as a separate process (for kills and concurrency)."""
    e = dict(os.environ, PYTHONPATH=str(SRC), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "aru.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
    )


def tiny_llama(folder: Path, *, hidden: int = HIDDEN, layers: int = LAYERS, vocab: int = 101, seed: int = 0, **kw):
    """A tiny random Llama saved as a safetensors folder (untied head unless asked)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=64,
        tie_word_embeddings=kw.pop("tie_word_embeddings", False),
        **kw,
    )
    model = LlamaForCausalLM(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return model


def directions_file(path: Path, d: int = HIDDEN, k: int = 1, *, bases=None, seed: int = 1, **meta) -> Path:
    from aru.directions import Directions, orthonormalize, save_directions

    if bases is None:
        bases = {"all": orthonormalize(torch.randn(k, d, generator=torch.Generator().manual_seed(seed)))}
    return save_directions(Directions(bases, d, {"method": "test", **meta}), path)


def fake_hub():
    """The fake Hub on 127.0.0.1 of tests/hub (imported from there, one implementation)."""
    hub_dir = str(Path(__file__).resolve().parents[1] / "hub")
    if hub_dir not in sys.path:
        sys.path.insert(0, hub_dir)
    from fakehub import FakeHub

    return FakeHub()


def rewrite_tensor(shard: Path, name: str, fn) -> None:
    """Replace tensor ``name`` of a safetensors file by ``fn(tensor)`` (a forger's edit)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(shard))
    tensors[name] = fn(tensors[name]).contiguous()
    save_file(tensors, str(shard), metadata={"format": "pt"})
