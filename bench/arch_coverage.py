"""Derive and prove the fold for every causal-LM model_type of the installed transformers; write the table.

Each model_type runs in its own subprocess (a timeout per type), from the config class's defaults shrunk to
tiny sizes with at most ``--max-layers`` decoder layers (every per-layer kind kept). Writes a JSON of the
proofs and the markdown table of docs/architectures.md (between its COVERAGE markers).

    python bench/arch_coverage.py --out bench/arch_coverage.json --docs docs/architectures.md
    python bench/arch_coverage.py llama olmo glm4      # some types only, printed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import transformers
transformers.logging.set_verbosity_error()
from aru.arch.derive import derive_spec
spec, proof = derive_spec(sys.argv[1], cache=False, max_layers=int(sys.argv[2]))
print("@@" + json.dumps(proof.to_dict()))
"""

WRAPPER = "a multimodal or encoder-decoder wrapper: its text decoder is derived under its own model_type"


def kind_of(model_type: str) -> str | None:
    """None for a decoder-only causal LM; else why it is out of scope."""
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type)
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder"
    if any(k.endswith("_config") and isinstance(v, dict) for k, v in cfg.to_dict().items()):
        return "wrapper"
    return None


def run_one(model_type: str, max_layers: int, timeout: float) -> dict:
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, model_type, str(max_layers)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"model_type": model_type, "verdict": "refused", "reason": f"timed out after {timeout:.0f} s"}
    line = next((x for x in out.stdout.splitlines() if x.startswith("@@")), None)
    if line is None:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model_type": model_type, "verdict": "refused", "reason": f"crashed: {err[:300]}"}
    proof = json.loads(line[2:])
    proof["wall_s"] = round(time.perf_counter() - start, 1)
    return proof


def table(results: list[dict]) -> str:
    rows = [
        "| model_type | verdict | max rel. Δlogit (fold vs hooks) | leak | writers / reason |",
        "|---|---|---|---|---|",
    ]
    order = {"exact": 0, "approximate": 1, "refused": 2, "out of scope": 3}
    for r in sorted(results, key=lambda r: (order.get(r["verdict"], 9), r["model_type"])):
        dev = "" if r.get("deviation") is None else f"{r['deviation']:.1e}"
        leak = "" if r.get("leak") is None else f"{r['leak']:.0e}"
        if r["verdict"] == "exact":
            what = ", ".join(w.split(".", 2)[-1] if "{i}" in w else w for w in r.get("writers", []))
        else:
            what = r.get("reason", "")
        what = what.replace("|", "/").replace("\n", " ")
        rows.append(f"| {r['model_type']} | {r['verdict']} | {dev} | {leak} | {what[:220]} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("types", nargs="*")
    ap.add_argument("--max-layers", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--docs", type=Path)
    args = ap.parse_args()
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    types = args.types or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    results = []
    for mt in types:
        try:
            scope = kind_of(mt)
        except Exception as exc:  # a config class that cannot be built with defaults
            scope = None
            print(f"{mt}: config defaults fail ({exc})", file=sys.stderr)
        if scope is not None:
            results.append({"model_type": mt, "verdict": "out of scope", "reason": scope})
        else:
            results.append(run_one(mt, args.max_layers, args.timeout))
        r = results[-1]
        print(mt, r["verdict"], r.get("deviation"), r.get("wall_s"), r.get("reason", "")[:160], flush=True)
        if args.out:
            args.out.write_text(json.dumps({"transformers": transformers.__version__, "results": results}, indent=1))
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("exact", "approximate", "refused", "out of scope")}
    print(counts)
    if args.docs:
        text = args.docs.read_text()
        start, end = "<!-- COVERAGE START -->", "<!-- COVERAGE END -->"
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        body = f"\ntransformers {transformers.__version__}: {summary}.\n\n{table(results)}\n"
        args.docs.write_text(head + start + body + end + tail)


if __name__ == "__main__":
    main()
