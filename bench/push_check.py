"""What the push check costs: re-deriving an edit (aru.pushcheck.check_model) against making it (aru edit).

    python bench/push_check.py [--model /work/cache/real-organism/base]

Edits MODEL (default: the real organism's SmolLM2-135M base if present, else the built-in toy organism) with a
random 2-direction basis into a temporary folder, then times, in one run: the edit, the file check
(aru.pushcheck.check_files: every sha256) and the model check (check_model: every tensor re-derived). Prints the
seconds and the check/edit ratio; also a forged folder (base shard swapped in, hashes rewritten) to show it is
refused. Nothing is left behind.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from aru.checkpoint import edit_checkpoint, load_config
from aru.directions import Directions, orthonormalize, save_directions
from aru.provenance import record_files
from aru.pushcheck import ForgedOutputError, check_files, check_model

REAL = Path("/work/cache/real-organism/base")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    if args.model:
        model = Path(args.model)
    elif REAL.is_dir():
        model = REAL
    else:
        from aru.organism import shipped

        model = shipped("base")
    _, _, hidden, _ = load_config(model)
    tmp = Path(tempfile.mkdtemp(prefix="aru-bench-push-"))
    try:
        q = orthonormalize(torch.randn(2, hidden, generator=torch.Generator().manual_seed(0)))
        dirs = save_directions(Directions({"all": q}, hidden, {"method": "bench"}), tmp / "d.safetensors")
        t0 = time.perf_counter()
        edit_checkpoint(model, dirs, tmp / "out", progress=False)
        t_edit = time.perf_counter() - t0
        t0 = time.perf_counter()
        record = check_files(tmp / "out")
        t_files = time.perf_counter() - t0
        t0 = time.perf_counter()
        chk = check_model(tmp / "out", record)
        t_model = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (tmp / "out").glob("*.safetensors")) / 1e6
        print(f"model {model} ({size:.0f} MB of shards)")
        print(f"edit {t_edit:.2f} s; push file check {t_files:.2f} s; push model check {t_model:.2f} s "
              f"(check/edit = {t_model / t_edit:.2f}); {chk.tensors} tensors, {chk.writers} writers, "
              f"{chk.writers_bitwise} bit-identical, max {chk.max_writer_ulps:.2g} ulps")  # fmt: skip
        for shard in (tmp / "out").glob("*.safetensors"):
            shutil.copy(model / shard.name, shard)
            record_files(tmp / "out", [shard.name])
        try:
            check_model(tmp / "out", check_files(tmp / "out"))
            print("forged folder: ACCEPTED (bug)")
        except ForgedOutputError as exc:
            print(f"forged folder (base shards swapped in, hashes rewritten): refused: {str(exc)[:160]}...")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
