"""Throughput of aru's activation capture against a plain full forward, on a random ~50M-parameter Llama.

For the same prompts, length-sorted into the same batches, it measures tokens/s of

- ``forward``: ``model(input_ids, attention_mask)`` under ``torch.inference_mode`` (all layers, final norm, lm_head);
- ``capture@L``: :func:`aru.capture.capture` at the last capture point ℓ = L (streaming float64 mean and second
  moment of the last token, d × d);
- ``capture@ℓ``: the same at a shallow layer ℓ (the forward stops after ℓ layers; expected ≈ L/ℓ × faster).

Each measurement runs in a fresh subprocess, so its peak memory is its own, measured over its first (warm-up) pass:
on CUDA ``max_memory_allocated`` minus the model; on CPU the peak resident-set growth over the loaded model and
batches (Linux ``VmHWM`` after resetting it, minus ``VmRSS`` before). The second pass is timed.
Modes are interleaved over ``--repeats`` rounds; the median and the best (least disturbed on a shared machine)
tokens/s are reported. Results are printed and written
to ``bench/results/capture_throughput.json``.

    python bench/capture_throughput.py [--prompts 64] [--batch-size 16] [--repeats 3] [--device cpu] [--shallow 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path

CONFIG = dict(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=10,
    num_attention_heads=8,
    num_key_value_heads=8,
    vocab_size=32000,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)


class IdTokenizer:
    """A stand-in tokenizer for random prompts: the text is the token ids separated by spaces."""

    bos_token = None
    pad_token_id = 0
    padding_side = "left"
    model_max_length = 512
    chat_template = None
    name_or_path = "ids"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(t) for t in text.split()]}


def _prompts(n: int, seed: int) -> list[str]:
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(16, 97, (n,), generator=g)
    vocab = CONFIG["vocab_size"]
    return [" ".join(str(int(t)) for t in torch.randint(1, vocab, (int(ln),), generator=g)) for ln in lengths]


def _model(device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**CONFIG)).to(device).eval()


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _measure(mode: str, layer: int | None, prompts: list[str], batch_size: int, device: str, threads: int, q) -> None:
    import torch

    from aru.capture import capture

    torch.set_num_threads(threads)
    model = _model(device)
    tok = IdTokenizer()
    ids = [tok(p)["input_ids"] for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = []
    for s in range(0, len(order), batch_size):
        chunk = [ids[i] for i in order[s : s + batch_size]]
        width = max(map(len, chunk))
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        m = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, t in enumerate(chunk):
            x[r, width - len(t) :], m[r, width - len(t) :] = torch.tensor(t), 1
        batches.append((x.to(device), m.to(device)))
    n_tokens = sum(map(len, ids))

    def run():
        if mode == "forward":
            with torch.inference_mode():
                for x, m in batches:
                    model(input_ids=x, attention_mask=m, use_cache=False)
        else:
            capture(model, tok, prompts, [layer], batch_size=batch_size)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    # peak memory of the first run (it makes every allocation the mode needs), then the timed second run
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
    run()
    peak = torch.cuda.max_memory_allocated() - base if device.startswith("cuda") else _status("VmHWM") - base
    t0 = time.perf_counter()
    run()
    dt = time.perf_counter() - t0
    q.put({"mode": mode, "tokens_per_s": n_tokens / dt, "seconds": dt, "tokens": n_tokens, "peak_bytes": peak})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shallow", type=int, default=2, help="the shallow capture layer ℓ")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "capture_throughput.json"))
    args = ap.parse_args()

    import torch

    L = CONFIG["num_hidden_layers"]
    n_params = sum(p.numel() for p in _model("cpu").parameters())
    prompts = _prompts(args.prompts, seed=0)
    modes = [("forward", None), (f"capture@{L}", L), (f"capture@{args.shallow}", args.shallow)]
    ctx = mp.get_context("spawn")
    runs: dict[str, list[dict]] = {m: [] for m, _ in modes}
    for rep in range(args.repeats):
        for name, layer in modes:
            q = ctx.Queue()
            p = ctx.Process(
                target=_measure,
                args=("forward" if layer is None else "capture", layer, prompts, args.batch_size, args.device,
                      args.threads, q),
            )  # fmt: skip
            p.start()
            res = q.get()
            p.join()
            runs[name].append(res)
            mib = res["peak_bytes"] / 2**20
            print(f"round {rep + 1}: {name:<12} {res['tokens_per_s']:>9.0f} tok/s  peak +{mib:.0f} MiB", flush=True)
    summary = {}
    fwd = [r["tokens_per_s"] for r in runs["forward"]]
    for name, _ in modes:
        tps = [r["tokens_per_s"] for r in runs[name]]
        summary[name] = {
            "tokens_per_s": statistics.median(tps),
            "ratio_vs_forward": statistics.median(tps) / statistics.median(fwd),
            "best_tokens_per_s": max(tps),
            "best_ratio_vs_forward": max(tps) / max(fwd),
            "peak_mib": max(r["peak_bytes"] for r in runs[name]) / 2**20,
        }
    result = {
        "model": {**CONFIG, "parameters": n_params},
        "prompts": args.prompts,
        "tokens": runs["forward"][0]["tokens"],
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "expected_shallow_ratio": L / args.shallow,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "summary": summary,
        "runs": runs,
    }
    n_tok = result["tokens"]
    print(f"\nrandom Llama, {n_params / 1e6:.1f}M parameters, L = {L}; {n_tok} tokens in {args.prompts} prompts")
    print(f"{'mode':<12} {'median tok/s':>12} {'× forward':>10} {'best tok/s':>10} {'× forward':>10} {'peak MiB':>9}")
    for name, s in summary.items():
        print(
            f"{name:<12} {s['tokens_per_s']:>12.0f} {s['ratio_vs_forward']:>10.2f} {s['best_tokens_per_s']:>10.0f} "
            f"{s['best_ratio_vs_forward']:>10.2f} {s['peak_mib']:>9.0f}"
        )
    print(f"(expected at layer {args.shallow}: about L/ℓ = {L / args.shallow:.1f}×)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
