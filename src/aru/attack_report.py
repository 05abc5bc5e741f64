"""Rendering and writing :func:`aru.attack.run_attack` reports: report.md, PNG curves, the model card's "Robustness"
section, and the all-or-nothing report folder."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aru.attack import REPORT_KIND, TRAINED

REPORT_JSON, REPORT_MD = "report.json", "report.md"
TITLES = {
    "erosion": "Erosion: fine-tuning on benign data",
    "relearn": "Relearning: fine-tuning on demonstrations of the removed behaviour",
}


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "never"
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _pm(m: float, s: float) -> str:
    return f"{m:.3f} ± {s:.3f}"


def curve_table(proto: dict[str, Any]) -> str:
    """One row per model: the worst-case behaviour rate (mean ± std over seeds) at each schedule point, the
    examples to 50% recovery and the area under the recovery curve."""
    curves = proto["curves"]
    sched = next(iter(curves.values()))["schedule"]
    head = ["model", *[f"n={n}" for n in sched], "n to 50%", "AUC"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, c in curves.items():
        b = c["behaviour_rate"]
        cells = [_pm(m, s) for m, s in zip(b["mean"], b["std"], strict=True)]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_f(c['n_to_half'], 1)} | {_pm(c['auc'], c['auc_std'])} |"
        )
    return "\n".join(lines)


def metric_table(proto: dict[str, Any], key: str) -> str | None:
    curves = proto["curves"]
    if not all(key in c for c in curves.values()):
        return None
    sched = next(iter(curves.values()))["schedule"]
    lines = ["| model | " + " | ".join(f"n={n}" for n in sched) + " |", "|---|" + "---:|" * len(sched)]
    for name, c in curves.items():
        lines.append(f"| {name} | " + " | ".join(_pm(m, s) for m, s in zip(c[key]["mean"], c[key]["std"],
                                                                        strict=True)) + " |")  # fmt: skip
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    cfg, specs = report["config"], report.get("specs", {})
    how = (
        "full fine-tuning"
        if cfg["full_finetune"]
        else f"LoRA r = {cfg['lora_r']}, α = {cfg['lora_alpha']}, all linear layers"
    )
    out = [
        "# aru attack",
        "",
        "Models: " + ", ".join(f"`{n}` ({specs.get(n, n)})" for n in report["models"]) + ". "
        f"Behaviour: {'the organism refusal (exact)' if report['organism'] else 'refusal markers'} on held-out X−; "
        f"recovery target: the original's behaviour rate {report['target']:.3f}.",
        "",
        f"Protocol: each point n is an independent fine-tune of the untouched model on n examples (a seeded draw), "
        f"{how}, AdamW at constant lr, {cfg['epochs']} epochs, batch {cfg['batch_size']}; worst case over lr ∈ "
        f"{{{', '.join(f'{lr:g}' for lr in cfg['lrs'])}}} per seed and point; mean ± std over {cfg['seeds']} seeds. "
        "n to 50%: examples until the mean behaviour rate reaches half the target (interpolated); AUC: area under "
        "min(rate / target, 1) over log(1 + n), normalised (0 = never back, 1 = back at once).",
        "",
    ]
    for proto in TRAINED:
        if proto not in report:
            continue
        p = report[proto]
        out += [f"## {TITLES[proto]}", "",
                f"Behaviour rate on held-out X− ({p['pool']} training examples in the pool):",
                "", curve_table(p), ""]  # fmt: skip
        for key in ("forbidden_accuracy", "allowed_accuracy", "over_refusal_rate"):
            t = metric_table(p, key)
            if t:
                out += [f"{key.replace('_', ' ')} (at the worst-case lr):", "", t, ""]
        if p.get("png"):
            out += [f"![{proto}]({p['png']})", ""]
    if "reextract" in report:
        out += ["## Re-extraction", "", "| model | method | best layer | held-out AUROC | behaviour before → after "
                "ablation |", "|---|---|---:|---:|---|"]  # fmt: skip
        for name, r in report["reextract"].items():
            for method, fit in r["fits"].items():
                ab = ""
                if method == r["ablated_method"]:
                    ab = f"{r['before']['behaviour_rate']:.3f} → {r['after']['behaviour_rate']:.3f}"
                    if "forbidden_accuracy" in r["before"]:
                        ab += (f" (forbidden accuracy {r['before']['forbidden_accuracy']:.3f} → "
                               f"{r['after']['forbidden_accuracy']:.3f})")  # fmt: skip
                out.append(f"| {name} | {method} | {fit['layer']} | {fit['auroc']:.3f} | {ab} |")
        out.append("")
    out += ["## Wall time (s)", "", ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()), ""]
    return "\n".join(out)


def plot_curves(report: dict[str, Any], proto: str, path: str | Path) -> Path | None:
    """The behaviour rate (and the organism's forbidden accuracy) against n, mean ± std band per model; None when
    matplotlib is missing (``pip install 'aru[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves = report[proto]["curves"]
    keys = ["behaviour_rate"] + [k for k in ("forbidden_accuracy",) if all(k in c for c in curves.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, c in curves.items():
            xs = [n + 1 for n in c["schedule"]]
            m, s = c[key]["mean"], c[key]["std"]
            ax.plot(xs, m, marker="o", label=name)
            ax.fill_between(xs, [a - b for a, b in zip(m, s, strict=True)], [a + b for a, b in zip(m, s, strict=True)],
                            alpha=0.2)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(n) for n in c["schedule"]])
        ax.set_xlabel("training examples n")
        ax.set_ylabel(key.replace("_", " ") + " (held-out)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(TITLES[proto])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def card_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The compact robustness summary kept in ``aru.json`` (``extra.attack``) for the model card."""
    out: dict[str, Any] = {"target": report["target"], "config": report["config"]}
    for proto in TRAINED:
        if proto in report:
            out[proto] = {name: {"schedule": c["schedule"], "behaviour_rate": c["behaviour_rate"]["mean"],
                                 "std": c["behaviour_rate"]["std"], "n_to_half": c["n_to_half"], "auc": c["auc"]}
                          for name, c in report[proto]["curves"].items()}  # fmt: skip
    if "reextract" in report:
        out["reextract"] = {n: {"auroc": max(f["auroc"] for f in r["fits"].values()),
                                "before": r["before"]["behaviour_rate"], "after": r["after"]["behaviour_rate"]}
                            for n, r in report["reextract"].items()}  # fmt: skip
    return out


def robustness_section(summary: dict[str, Any] | None) -> list[str]:
    """Model-card lines: the "Robustness" section from :func:`card_summary` (empty when there is none)."""
    if not isinstance(summary, dict) or not summary:
        return []
    cfg = summary.get("config") or {}
    out = ["## Robustness", "", "`aru attack`: does the removed behaviour come back under fine-tuning? Behaviour rate "
           f"on held-out prompts after n training examples (worst case over lr {cfg.get('lrs')}, mean over "
           f"{cfg.get('seeds')} seeds; target = the original's rate {summary.get('target', float('nan')):.3f}).",
           ""]  # fmt: skip
    for proto in TRAINED:
        rows = summary.get(proto)
        if not isinstance(rows, dict) or not rows:
            continue
        sched = next(iter(rows.values()))["schedule"]
        out += [f"{TITLES[proto]}:", "", "| model | " + " | ".join(f"n={n}" for n in sched) + " | n to 50% | AUC |",
                "|---|" + "---:|" * (len(sched) + 2)]  # fmt: skip
        for name, r in rows.items():
            out.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in r["behaviour_rate"])
                       + f" | {_f(r['n_to_half'], 1)} | {_f(r['auc'])} |")  # fmt: skip
        out.append("")
    rx = summary.get("reextract")
    if isinstance(rx, dict) and rx:
        out += ["Re-extraction (refit on the model, fold the refitted direction out):", ""]
        out += [f"- {n}: best held-out AUROC {r['auroc']:.3f}; behaviour {r['before']:.3f} → {r['after']:.3f}"
                for n, r in rx.items()]  # fmt: skip
        out.append("")
    return out


def _check_output(final: Path, inputs: list[Path]) -> None:
    for src in inputs:
        if final == src or src in final.parents or final in src.parents:
            raise ValueError(f"output {str(final)!r} overlaps the model folder {str(src)!r}; aru never writes into "
                             "its inputs: choose another -o folder")  # fmt: skip
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"output {str(final)!r} exists and is not a folder; choose another -o folder")
    if final.is_dir() and any(final.iterdir()) and not is_attack_report(final):
        raise FileExistsError(f"output {str(final)!r} is a non-empty folder that is not an aru attack report (no "
                              f"{REPORT_JSON} of kind {REPORT_KIND!r}); choose another -o folder")  # fmt: skip


def is_attack_report(folder: Path) -> bool:
    try:
        return json.loads((folder / REPORT_JSON).read_text()).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_output(final: str | Path, *, overwrite: bool, inputs: list[str | Path] = ()) -> Path:
    """The resolved output folder, or an error before any work: it overlaps an input, is a non-aru folder, or is an
    existing report without ``overwrite``."""
    final = Path(final).expanduser().resolve()
    _check_output(final, [Path(p).expanduser().resolve() for p in inputs])
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output {str(final)!r} already holds an attack report; pass --overwrite or choose another"
        )
    return final


def write_report(report: dict[str, Any], output: str | Path, *, overwrite: bool = False, inputs=()) -> Path:
    """Write report.json, report.md and ``{protocol}.png`` into ``output`` all-or-nothing (a temporary folder beside
    it, renamed into place); only an earlier attack report is ever replaced."""
    final = check_output(output, overwrite=overwrite, inputs=list(inputs))
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.aru-attack-", dir=final.parent))
    try:
        out = work / final.name
        out.mkdir()
        for proto in TRAINED:
            if proto in report:
                png = plot_curves(report, proto, out / f"{proto}.png")
                report[proto]["png"] = None if png is None else png.name
        (out / REPORT_MD).write_text(report_markdown(report))
        (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
        if final.exists():
            final.replace(work / "old")
        out.replace(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
