"""Compare a derived spec with the table's on every tensor name of a tiny model (memory and disk)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from safetensors import safe_open


def names_of(model) -> list[str]:
    mem = [n for n, _ in model.named_parameters()]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp)
        disk = []
        for f in sorted(Path(tmp).glob("*.safetensors")):
            with safe_open(f, framework="pt") as h:
                disk += list(h.keys())
    return sorted(set(mem) | set(disk))


def disagreements(table, derived, names: list[str]) -> list[str]:
    out = []
    for name in names:
        a, b = table.match(name), derived.match(name)
        fa = None if a is None else (a[0].layout, a[0].role, a[1], a[2])
        fb = None if b is None else (b[0].layout, b[0].role, b[1], b[2])
        if fa != fb:
            out.append(f"{name}: table {fa} derived {fb}")
    if dict(table.postnorm) != dict(derived.postnorm):
        out.append(f"postnorm: table {table.postnorm} derived {derived.postnorm}")
    if table.postnorm and table.norm_offset != derived.norm_offset:
        out.append(f"norm_offset: table {table.norm_offset} derived {derived.norm_offset}")
    return out
