"""The toy organism under attack: fine-tuned original, aru's edit (the demo recipe), the oracle edit and the base,
erosion and relearning, several seeds. Writes an ``aru attack`` report folder (report.json/.md, PNG curves).

    python bench/attack_organism.py -o attack-organism/ [--schedule 0,3,30] [--lrs 1e-2] [--seeds 3]

Partial results are kept in OUTPUT.partial.json after every curve (the machine may be slow).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--schedule", default="0,1,3,10,30,100")
    ap.add_argument("--lrs", default="1e-3,1e-2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocols", default="relearn,erosion")
    ap.add_argument("--no-demo", action="store_true", help="Skip aru's edit (the demo pipeline) when time is short.")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    from aru.attack import AttackConfig, build_data, measure, run_curve, summarize
    from aru.attack_report import write_report
    from aru.organism import load_shipped, organism_prompts
    from aru.organism.evaluate import fold_oracle
    from aru.organism.world import World
    from aru.pipeline import run_demo

    t0 = time.perf_counter()
    base, tuned, tok = load_shipped()
    oracle = fold_oracle(tuned, base=base, tokenizer=tok)
    models = {"oracle edit": oracle, "base": base, "fine-tuned original": tuned}
    chosen = "not run (--no-demo)"
    if not args.no_demo:
        tmp = Path(tempfile.mkdtemp(prefix="aru-attack-bench-"))
        demo = run_demo(output=tmp / "edited", progress=False)
        chosen = demo["selection"]["chosen"]["name"]
        edit = AutoModelForCausalLM.from_pretrained(str(tmp / "edited"), dtype=torch.float32).eval()
        models = {"aru edit": edit, **models}
    t_setup = time.perf_counter() - t0
    cfg = AttackConfig(protocols=tuple(args.protocols.split(",")), seeds=args.seeds,
                       schedule=tuple(int(x) for x in args.schedule.split(",")),
                       lrs=tuple(float(x) for x in args.lrs.split(",")), max_new_tokens=8)  # fmt: skip
    prompts = {s: organism_prompts(s) for s in ("train", "val", "test")}
    data = build_data(prompts, tok, cfg, reference=tuned, world=World(0))
    target = measure(tuned, tok, data, cfg)["behaviour_rate"]
    report = {"kind": "aru-attack", "config": {k: list(v) if isinstance(v, tuple) else v for k, v in
              cfg.__dict__.items()}, "models": list(models), "organism": True, "target": target,
              "specs": {"aru edit": f"aru demo ({chosen})",
                        "oracle edit": "aru.organism.evaluate.fold_oracle", "base": "organism:base",
                        "fine-tuned original": "organism:tuned"},
              "timings": {"setup": round(t_setup, 1)}, "torch_threads": torch.get_num_threads()}  # fmt: skip
    partial = Path(args.output + ".partial.json")
    for proto in cfg.protocols:
        t1 = time.perf_counter()
        report[proto] = {"curves": {}, "runs": [], "pool": len(getattr(data, proto))}
        for name, model in models.items():
            c = run_curve(model, tok, getattr(data, proto), data, cfg, log=print, desc=f"{proto} {name}")
            report[proto]["curves"][name] = summarize(c, cfg, target)
            report[proto]["runs"] += [{"model": name, **r} for r in c["runs"]]
            report["timings"][proto] = round(time.perf_counter() - t1, 1)
            partial.write_text(json.dumps(report, indent=2, default=str))
    report["timings"]["total"] = round(time.perf_counter() - t0, 1)
    print(write_report(report, args.output, overwrite=True))


if __name__ == "__main__":
    main()
