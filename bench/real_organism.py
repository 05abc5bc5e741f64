"""The real organism's table: base / tuned / aru's automatic edit / the oracle / ``aru fit`` + ``aru edit`` defaults,
on every ground-truth metric (:mod:`aru.organism.real.evaluate`), with wall times, measured in one run.

1. build the base from the wheel (cached) and rebuild the tuned model from the shipped adapter (timed, fresh);
2. ``aru run`` with the real-organism recipe (automatic selection) → edited folder (timed);
3. the oracle: diff of means between tuned and base activations, one direction folded out of every layer (timed);
4. ``aru fit TUNED --bad bad_train.txt --good good_train.txt`` then ``aru edit`` with the defaults (timed; each
   ``--extra METHOD@LAYER`` adds another fit + edit, e.g. ``diff-means@-1``);
5. every model evaluated on the held-out test prompts (``eval.max_prompts`` of the recipe per kind) against the
   base's own answers.

Writes ``bench/results/real_organism.json`` and prints the markdown table.

    python bench/real_organism.py [--work /work/cache/real-organism/bench] [--skip-run] [--extra diff-means@-1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _aru(*args: str) -> float:
    """Run the aru CLI in a subprocess (as a user would); returns wall seconds."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    t0 = time.time()
    cmd = [sys.executable, "-c", "from aru.cli import main; main()", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"aru {' '.join(args)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    print(res.stdout[-3000:], file=sys.stderr)
    return time.time() - t0


def fit_edit(tuned: Path, prompts: dict, out: Path, method: str | None, layer: str | None) -> tuple[Path, dict]:
    """``aru fit`` (defaults unless method / layer) + ``aru edit`` (defaults); returns (folder, timings)."""
    name = "defaults" if method is None else f"{method}@{layer}"
    dirs = out / f"dirs-{name}.safetensors"
    edited = out / f"edit-{name}"
    fit_args = ["fit", str(tuned), "--bad", str(prompts["bad_train"]), "--good", str(prompts["good_train"])]
    fit_args += ["-o", str(dirs)] + (["--method", method] if method else []) + (["--layers", layer] if layer else [])
    t_fit = _aru(*fit_args)
    t_edit = _aru("edit", str(tuned), "--directions", str(dirs), "-o", str(edited), "--force")
    return edited, {"fit_s": round(t_fit, 1), "edit_s": round(t_edit, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/work/cache/real-organism/bench")
    ap.add_argument("--skip-run", action="store_true", help="reuse WORK/run_report.json from an earlier run")
    ap.add_argument("--extra", action="append", default=[], help="METHOD@LAYER: another aru fit + edit")
    args = ap.parse_args()

    import torch

    from aru.organism.real.base import build_base
    from aru.organism.real.evaluate import RealEvalConfig, evaluate_rows, rows_markdown
    from aru.organism.real.prompts import write_prompt_files
    from aru.organism.real.train import build_tuned, load_folder

    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict] = {}
    t0 = time.time()
    base_dir = build_base()
    times["base"] = {"build_s (cached)": round(time.time() - t0, 1)}
    t0 = time.time()
    tuned_dir = build_tuned(work / "tuned", base=base_dir, force=True)
    times["tuned"] = {"rebuild_s": round(time.time() - t0, 1)}
    prompts = write_prompt_files(work / "prompts")

    if not args.skip_run:  # aru run: fit, automatic selection, edit, verify, evaluate + the ground-truth rows
        from aru.organism.real.demo import real_recipe
        from aru.pipeline import run_recipe

        t0 = time.time()
        res = run_recipe(real_recipe(), output=work / "run", overwrite=True, push=False)
        times["aru run"] = {"run_s": round(time.time() - t0, 1), **res.timings}
        (work / "run_report.json").write_text(json.dumps({**res.report, "bench_times": times}, default=str))
    report = json.loads((work / "run_report.json").read_text())
    times |= {k: v for k, v in report.get("bench_times", {}).items() if k not in times}
    org, chosen = report["organism"], report["selection"]["chosen"]
    rows = [org[k] | {"model": m} for k, m in (("base", "base"), ("tuned", "tuned"), ("edited", "aru run (automatic)"),
                                                ("oracle", "oracle"))]  # fmt: skip
    times["oracle"] = {"fit+fold_s": org["oracle"]["oracle_seconds"], "layer": org["oracle"]["oracle_layer"]}

    others: dict[str, Path] = {}
    for spec in [None, *args.extra]:
        method, layer = (None, None) if spec is None else spec.split("@")
        folder, t = fit_edit(tuned_dir, prompts, work, method, layer)
        key = "fit+edit defaults" if spec is None else f"fit+edit {spec}"
        others[key], times[key] = folder, t
    base, tok = load_folder(base_dir)
    tuned, _ = load_folder(tuned_dir)
    models = {k: load_folder(v)[0] for k, v in others.items()}
    cfg = RealEvalConfig(n=org["n"])
    rows += evaluate_rows(models, tok, base=base, tuned=tuned, cfg=cfg, base_answers=org["base_answers"])
    notes = {k: ", ".join(f"{a} {b}" for a, b in v.items()) for k, v in times.items()}
    notes["aru run (automatic)"] = f"{chosen['name']}; " + notes.pop("aru run", "")
    md = rows_markdown(rows, extra=notes)
    out = {"n": org["n"], "rows": rows, "times": times, "chosen": chosen, "torch_threads": torch.get_num_threads()}
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "real_organism.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(md)


if __name__ == "__main__":
    main()
