"""Streaming edit vs `cp -r` vs the naive path, on a random bf16 Llama-style checkpoint of >= 2 GB.

    python bench/edit_throughput.py [--layers 22] [--hidden 2048] [--keep]

Builds (once, cached in bench/.cache/) a random bf16 Llama checkpoint in 1 GB shards, then measures in one
run, each in its own subprocess: `cp -r` of the folder, `aru edit`, and the naive path (from_pretrained ->
fold_into_model -> save_pretrained). Prints the time ratios and peak RSS, and writes
bench/results/edit_throughput.json. Targets: aru edit <= 1.5x cp, >= 3x faster than naive, peak RSS <= 25%
of the checkpoint size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"

HASH = """
import hashlib, sys
for path in sys.argv[1:]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            h.update(block)
"""

NAIVE = """
import sys, torch
from transformers import AutoModelForCausalLM
from aru.directions import load_directions
from aru.model_edit import fold_into_model, make_plan
src, dirs, out = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
plan = make_plan(load_directions(dirs), model.config.num_hidden_layers)
fold_into_model(model, plan)
model.save_pretrained(out, max_shard_size="1GB")
"""


def build(layers: int, hidden: int) -> tuple[Path, Path]:
    """A random bf16 Llama checkpoint written tensor by tensor (no model in memory), and a directions file."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from aru.directions import Directions, orthonormalize, save_directions

    folder = CACHE / f"llama-bf16-{layers}x{hidden}"
    dirs = CACHE / f"dirs-{hidden}.safetensors"
    if (folder / "model.safetensors.index.json").is_file() and dirs.is_file():
        return folder, dirs
    shutil.rmtree(folder, ignore_errors=True)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 256,
        vocab_size=32000,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in AutoModelForCausalLM.from_config(config).named_parameters()}
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    shards, current, size, weight_map = [], {}, 0, {}

    def flush():
        nonlocal current, size
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_file(current, str(folder / name), metadata={"format": "pt"})
        shards.append(name)
        weight_map.update({k: name for k in current})
        current, size = {}, 0

    for name, shape in shapes.items():
        t = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
        if size + t.numel() * 2 > 1_000_000_000 and current:
            flush()
        current[name] = t
        size += t.numel() * 2
    flush()
    n = len(shards)
    renamed = {}
    for i, s in enumerate(shards):
        new = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        (folder / s).rename(folder / new)
        renamed[s] = new
    total = sum((folder / s).stat().st_size for s in renamed.values())
    index = {"metadata": {"total_size": total}, "weight_map": {k: renamed[v] for k, v in weight_map.items()}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.dtype = "bfloat16"
    config.save_pretrained(folder)
    d = hidden
    q = orthonormalize(torch.randn(1, d, generator=gen))
    save_directions(Directions({"all": q}, d, {"method": "bench"}), dirs)
    return folder, dirs


def run(cmd: list[str]) -> tuple[float, float]:
    """(seconds including the writeback of its output, peak RSS in GB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    os.sync()  # a copy is done when it is on disk: every contender pays for its own writeback
    dt = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return dt, usage.ru_maxrss / 1e6  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        print(json.dumps([str(p) for p in build(args.layers, args.hidden)]))
        return
    # build in a child: a big parent would inflate its children's peak RSS (fork copies its page table)
    built = subprocess.run(
        [sys.executable, __file__, "--build-only", "--layers", str(args.layers), "--hidden", str(args.hidden)],
        check=True,
        capture_output=True,
        text=True,
    )
    src, dirs = (Path(p) for p in json.loads(built.stdout.strip().splitlines()[-1]))
    size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    work = CACHE / "runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    subprocess.run(["cat", *map(str, src.glob("*.safetensors"))], stdout=subprocess.DEVNULL, check=True)  # warm
    print(
        f"checkpoint: {src.name}, {size / 1e9:.2f} GB in {len(list(src.glob('*.safetensors')))} shards", file=sys.stderr
    )

    results = {}
    for name, cmd in [
        ("cp", ["cp", "-r", str(src), str(work / "cp")]),
        # the floor aru's provenance puts under any edit: sha256 of every input and output shard (2x the bytes)
        ("sha256_twice", [sys.executable, "-c", HASH, *[str(p) for p in sorted(src.glob("*.safetensors"))] * 2]),
        ("aru_edit", ["aru", "edit", str(src), "-d", str(dirs), "-o", str(work / "aru")]),
        ("naive", [sys.executable, "-c", NAIVE, str(src), str(dirs), str(work / "naive")]),
    ]:
        os.sync()
        seconds, rss = run(cmd)
        results[name] = {"seconds": round(seconds, 2), "peak_rss_gb": round(rss, 3)}
        print(f"{name:9s} {seconds:7.1f} s  peak RSS {rss:.2f} GB", file=sys.stderr)
        if name in ("cp", "naive") and not args.keep:
            shutil.rmtree(work / name.replace("_edit", ""), ignore_errors=True)
    out = {
        "checkpoint_gb": round(size / 1e9, 3),
        "results": results,
        "aru_vs_cp": round(results["aru_edit"]["seconds"] / results["cp"]["seconds"], 3),
        "naive_vs_aru": round(results["naive"]["seconds"] / results["aru_edit"]["seconds"], 3),
        "sha256_twice_vs_cp": round(results["sha256_twice"]["seconds"] / results["cp"]["seconds"], 3),
        "aru_rss_fraction_of_checkpoint": round(results["aru_edit"]["peak_rss_gb"] * 1e9 / size, 3),
        "targets": {"aru_vs_cp": "<= 1.5", "naive_vs_aru": ">= 3", "aru_rss_fraction_of_checkpoint": "<= 0.25"},
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edit_throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
