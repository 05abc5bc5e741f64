"""``aru run``: prompts → fit → select → edit (streaming) → verify → evaluate → report, from one recipe.

The output folder is built all-or-nothing: everything is written into a temporary folder beside the target and
renamed into place only once the edit is verified, evaluated and reported; a failed run leaves nothing behind and
never touches its input. The output holds the edited checkpoint (loadable with plain transformers), ``aru.json``
(provenance, with the verification, evaluation, selection and recipe under ``extra``), ``report.md`` and
``report.json`` (the candidate table included), ``selection.png`` when matplotlib is installed, and the chosen
directions in ``aru/directions.safetensors`` (so ``aru verify OUT`` works with no arguments).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aru.errors import AruError
from aru.recipe import Recipe

REPORT_MD, REPORT_JSON, SELECTION_PNG = "report.md", "report.json", "selection.png"


@dataclass
class Prompts:
    """User prompts per split: ``{"train"|"val"|"test": (X−, X+)}``."""

    splits: dict[str, tuple[list[str], list[str]]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {"bad": len(b), "good": len(g)} for s, (b, g) in self.splits.items()}


@dataclass
class RunResult:
    """What :func:`run_recipe` produced."""

    output: Path
    report: dict[str, Any]
    markdown: str
    pushed: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "pushed": self.pushed, **self.report}


def _subset(prompts: list[str], n: int | None, seed: int) -> list[str]:
    from aru.evaluate import seeded_subset

    return seeded_subset(prompts, n, seed)


def load_recipe_prompts(recipe: Recipe, folder: str | Path | None = None) -> Prompts:
    """The train / val / test prompt splits a recipe names (``folder``: the model's folder, whose organism world
    gives the organism prompts)."""
    p = recipe.prompts
    if p.source == "organism":
        from aru.organism import organism_prompts
        from aru.organism.evaluate import world_of

        world = world_of(folder)
        splits = {s: organism_prompts(s, world) for s in ("train", "val", "test")}
        if p.max_prompts:
            splits = {s: (_subset(b, p.max_prompts, p.seed), _subset(g, p.max_prompts, p.seed)) for s, (b, g) in
                      splits.items()}  # fmt: skip
        return Prompts({s: (list(b), list(g)) for s, (b, g) in splits.items()})
    from aru.prompts import load_prompts, split_prompts

    kw = dict(field=p.field, column=p.column, revision=p.revision)
    bad = _subset(load_prompts(recipe.path(p.bad), **kw), p.max_prompts, p.seed)
    good = _subset(load_prompts(recipe.path(p.good), **kw), p.max_prompts, p.seed)
    sb = split_prompts(bad, fractions=p.fractions, seed=p.seed)
    sg = split_prompts(good, fractions=p.fractions, seed=p.seed)
    splits = {"train": (sb.train, sg.train), "val": (sb.val, sg.val), "test": (sb.test, sg.test)}
    for name, (b, g) in splits.items():
        if not b or not g:
            raise ValueError(
                f"the {name} split has {len(b)} bad and {len(g)} good prompts; give prompts.bad/good more prompts "
                f"(have {len(bad)} and {len(good)}) or change prompts.fractions = {list(p.fractions)}"
            )
    return Prompts(splits)


def fit_candidates(model, tokenizer, recipe: Recipe, prompts: Prompts, *, progress: bool = True):
    """Capture X− / X+ once and fit every method of ``recipe.fit`` with the largest k it allows.

    Returns ``({method: Directions}, {method: per-layer table})``.
    """
    from aru.estimators import ESTIMATORS, capture_sets, fit_from_captures, get_estimator

    f, p = recipe.fit, recipe.prompts
    (tb, tg), (vb, vg) = prompts.splits["train"], prompts.splits["val"]
    moments = any(ESTIMATORS[m].needs_moments for m in f.methods)
    captures = capture_sets(
        model, tokenizer, tb, tg, layers=list(f.layers) if f.layers else None, position=f.position,
        batch_size=f.batch_size, val_bad=vb, val_good=vg, system=p.system, raw=p.raw, moments=moments,
        progress=progress,
    )  # fmt: skip
    fits, tables = {}, {}
    for method in f.methods:
        cap = ESTIMATORS[method].max_k
        k = max(f.k) if cap is None else min(max(f.k), cap)
        get_estimator(method, k=k)
        res = fit_from_captures(captures, method=method, k=k)
        fits[method], tables[method] = res.directions, res.table
    return fits, tables


def _markers(recipe: Recipe) -> tuple[str, ...]:
    from aru.evaluate import DEFAULT_MARKERS

    return tuple(recipe.eval.markers or DEFAULT_MARKERS) + tuple(recipe.eval.extra_markers)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_output(final: Path, source: Path) -> None:
    """Refuse an output that overlaps the input, or an existing folder that is not an aru output."""
    from aru.provenance import PROVENANCE_FILE

    if final == source or source in final.parents or final in source.parents:
        raise ValueError(
            f"output {str(final)!r} overlaps the input model {str(source)!r}; aru never modifies its input: "
            "choose another output folder with -o"
        )
    if final.is_dir() and any(final.iterdir()) and not (final / PROVENANCE_FILE).is_file():
        raise FileExistsError(
            f"output {str(final)!r} is a non-empty folder that is not an aru output (no {PROVENANCE_FILE}); "
            "--overwrite only replaces aru outputs: choose another folder"
        )


def summary_rows(rows: list[dict[str, Any]], org: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Flat, scalar evaluation rows for ``aru.json`` and the model card: the generic metrics of each model, the most
    matched refusal marker, and (for the organism) its ground truth plus the oracle row as the ceiling."""
    keys = ("behaviour_rate", "over_refusal_rate", "kl_first_token", "kl_continuation", "retain_cross_entropy",
            "retain_perplexity", "n_bad", "n_good")  # fmt: skip
    out = []
    for r in rows:
        row = {"model": r["model"], **{k: r[k] for k in keys if k in r}}
        row["top_marker"] = next(iter(r.get("markers_bad") or {}), None)
        if org:
            m = org["tuned" if r["model"] == "original" else "edited"]
            row.update({f"organism_{k}": m.get(k) for k, _ in ORGANISM_COLUMNS})
        out.append(row)
    if org and org.get("oracle") and "error" not in org["oracle"]:
        out.append({"model": "oracle direction (ceiling)", **{f"organism_{k}": org["oracle"].get(k) for k, _ in
                                                                 ORGANISM_COLUMNS}})  # fmt: skip
    return out


def organism_table(edited, tuned, tokenizer) -> dict[str, Any]:
    """Ground truth of the fine-tuned organism, the edited one (a folder, or a loaded model such as base + adapter)
    and the oracle-edited one (the ceiling), test split, plus the base model's ceilings; see
    :func:`aru.organism.evaluate_organism`."""
    from aru.organism import evaluate_organism, quick_metrics

    if isinstance(edited, (str, Path)):
        res = evaluate_organism(str(edited), reference=tuned, oracle=True)
    else:
        res = evaluate_organism(edited, tokenizer, reference=tuned, oracle=True)
    tuned_m = quick_metrics(tuned, tokenizer)
    tuned_m["kl_to_tuned"] = 0.0
    oracle = res["ceilings"].get("oracle") or {}
    return {"tuned": tuned_m, "edited": res["metrics"], "oracle": oracle, "ceilings": res["ceilings"]}


def demo_checks(org: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's targets: refusal ≥ 90% → ≤ 5%; forbidden accuracy recovers ≥ 80% of the oracle's gain; allowed
    accuracy within 3 points."""
    t, e, o = org["tuned"], org["edited"], org["oracle"]
    gain, oracle_gain = e["forbidden_accuracy"] - t["forbidden_accuracy"], None
    if "forbidden_accuracy" in o:
        oracle_gain = o["forbidden_accuracy"] - t["forbidden_accuracy"]
    ratio = None if not oracle_gain else gain / oracle_gain
    return [
        {
            "check": "refusal rate falls from >= 90% to <= 5%",
            "value": f"{t['refusal_rate']:.1%} -> {e['refusal_rate']:.1%}",
            "passed": t["refusal_rate"] >= 0.9 and e["refusal_rate"] <= 0.05,
        },
        {
            "check": "forbidden accuracy recovers >= 80% of the oracle's gain",
            "value": "n/a (no oracle)" if ratio is None else f"{ratio:.0%} of the oracle's gain",
            "passed": ratio is not None and ratio >= 0.8,
        },
        {
            "check": "allowed accuracy within 3 points",
            "value": f"{t['allowed_accuracy']:.1%} -> {e['allowed_accuracy']:.1%}",
            "passed": abs(e["allowed_accuracy"] - t["allowed_accuracy"]) <= 0.03 + 1e-9,
        },
    ]


ORGANISM_COLUMNS = (
    ("refusal_rate", "refusal rate (X−, full gen.)"),
    ("forbidden_accuracy", "forbidden accuracy"),
    ("allowed_accuracy", "allowed accuracy"),
    ("kl_to_tuned", "KL on allowed (nats/token)"),
    ("statement_completion", "forbidden statement completion"),
)


def organism_markdown(org: dict[str, Any]) -> str:
    head = "| model | " + " | ".join(h for _, h in ORGANISM_COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * len(ORGANISM_COLUMNS)]
    for name, key in (("fine-tuned", "tuned"), ("**edited (aru run)**", "edited"), ("oracle direction (ceiling)",
                                                                                      "oracle")):  # fmt: skip
        row = org.get(key) or {}
        cells = ["" if row.get(k) is None else f"{row[k]:.3f}" for k, _ in ORGANISM_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fit_markdown(tables: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| method | layer | score | AUROC (val) | d′ | cos(diff-means) |", "|---|---:|---:|---:|---:|---:|"]
    for method, rows in tables.items():
        for r in rows:
            lines.append(
                f"| {method} | {r['layer']} | {r['score']:.4g} | {r['auroc']:.3f} | {r['separation']:.2f} | "
                f"{r['cos_diff_means']:.3f} |"
            )
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    """The run report (report.md)."""
    from aru.evaluate import rows_markdown
    from aru.select import selection_markdown

    sel = report["selection"]
    ch = sel["chosen"]
    out = [
        f"# aru run: {report['recipe'].get('name') or report['model']}",
        "",
        f"Model `{report['model']}` → `{report['output']}` (aru {report['aru_version']}).",
        "",
        f"**Chosen edit:** {ch['method']} directions fitted at residual layer {ch['layer']}, k = {ch['k']}, "
        f"strength λ = {ch['strength']:g}, edited layers: {ch['edit']}"
        + ("" if sel["within_budget"] else f" — **outside the KL budget {sel['kl_budget']:g}**")
        + ".",
        "",
    ]
    if report.get("organism"):
        out += ["## Organism ground truth (test split)", "", organism_markdown(report["organism"]), ""]
        for c in report.get("checks", []):
            out.append(f"- {'PASS' if c['passed'] else 'FAIL'}: {c['check']} ({c['value']})")
        out.append("")
    out += ["## Evaluation (test split)", "", rows_markdown(report["evaluation"]), ""]
    v = report["verify"]
    out += [
        "## Verification",
        "",
        f"max |Δlogit| against the original with projection hooks: {v['max_abs_dlogit']:.3g} "
        f"(relative {v['rel_dlogit']:.2e}, tolerance {v['tol']:g}); leak "
        + ("n/a" if v.get("leak") is None else f"{v['leak']:.2e}")
        + f"; {'passed' if v['passed'] else 'FAILED'}.",
        "",
        f"## Selection ({len(sel['candidates'])} candidates, validation split, KL budget {sel['kl_budget']:g})",
        "",
        f"Refusal tokens: {', '.join(repr(t) for t in sel['refusal_tokens'])}. Scored with hooks; the best "
        f"{sel['settings']['confirm']} within the budget confirmed with generations; chosen row in bold, "
        "◆ = Pareto front.",
        "",
        selection_markdown(sel["candidates"], sel["baseline"]),
        "",
        "## Fit (per layer)",
        "",
        _fit_markdown(report["fit"]),
        "",
        "## Timings (s)",
        "",
        ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()),
        "",
    ]
    return "\n".join(out)


def run_recipe(
    recipe: Recipe,
    *,
    output: str | Path | None = None,
    overwrite: bool | None = None,
    push: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``recipe`` end to end and return the report; the output folder is created all-or-nothing."""
    log = log or (_stderr if progress else (lambda _msg: None))
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        return _run(recipe, output=output, overwrite=overwrite, push=push, progress=progress, log=log)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _run(recipe: Recipe, *, output, overwrite, push: bool, progress: bool, log: Callable[[str], None]) -> RunResult:
    import torch

    from aru import __version__
    from aru.checkpoint import edit_checkpoint
    from aru.evaluate import EvalConfig, evaluate, is_hub_id, is_organism, load_model
    from aru.provenance import check_provenance, record_files, update_provenance
    from aru.select import candidate_directions, edit_layers, select
    from aru.verify import verify_edit

    timings: dict[str, float] = {}
    t0 = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        timings[name] = round(now - last, 2)
        last = now

    final = Path(output if output is not None else recipe.edit.output).expanduser().resolve()
    overwrite = recipe.edit.overwrite if overwrite is None else overwrite
    if final.exists() and not overwrite:
        raise FileExistsError(f"output {str(final)!r} already exists; choose another with -o or pass --overwrite")
    if recipe.eval.retain:
        retain = Path(recipe.path(recipe.eval.retain))
        if not retain.is_file():
            raise FileNotFoundError(f"eval.retain = {recipe.eval.retain!r}: {str(retain)!r} does not exist")
    else:
        retain = None

    log(f"aru run: loading {recipe.model.id}")
    model, tokenizer, folder = load_model(
        recipe.model.id, revision=recipe.model.revision, dtype=recipe.model.dtype, device=recipe.model.device
    )
    _check_output(final, Path(folder).resolve())
    prompts = load_recipe_prompts(recipe, folder)
    lap("load")
    log(f"aru run: fitting {', '.join(recipe.fit.methods)} on {prompts.counts()['train']} training prompts")
    fits, tables = fit_candidates(model, tokenizer, recipe, prompts, progress=progress)
    lap("fit")
    s, p = recipe.select, recipe.prompts
    vb, vg = prompts.splits["val"]
    log("aru run: selecting")
    selection = select(
        model, tokenizer, fits, vb, vg, ks=recipe.fit.k, strengths=s.strengths, edits=s.edit_layers,
        kl_budget=s.kl_budget, confirm=s.confirm, max_prompts=s.max_prompts, max_new_tokens=s.max_new_tokens,
        seed=s.seed, markers=_markers(recipe), system=p.system, raw=p.raw, batch_size=recipe.eval.batch_size,
        progress=progress,
    )  # fmt: skip
    lap("select")
    chosen = selection.chosen
    directions = candidate_directions(chosen, fits)
    num_layers = model.config.num_hidden_layers

    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.aru-run-", dir=final.parent))
    try:
        out = work / final.name
        log(f"aru run: editing ({chosen.name})")
        source = recipe.model.id if is_hub_id(recipe.model.id) else folder  # a Hub id is recorded as such
        kw = dict(
            layers=edit_layers(chosen.edit, chosen.layer, num_layers), strength=chosen.strength,
            keep_tied=recipe.edit.keep_tied, postnorm=recipe.edit.postnorm, dtype=recipe.edit.compute_dtype,
            revision=recipe.model.revision,
        )  # fmt: skip
        adapter = recipe.edit.format == "peft"
        if adapter:
            from aru.lora import export_adapter

            edit = export_adapter(source, directions, out, adapter_bias=recipe.edit.adapter_bias, **kw)
        else:
            edit = edit_checkpoint(source, directions, out, progress=progress, **kw)
        lap("edit")
        log("aru run: verifying")
        ver = verify_edit(out, folder)
        if not ver.passed:
            raise AruError(
                f"the edited checkpoint does not reproduce the hooked original (relative Δlogit {ver.rel_dlogit:.2e} > "
                f"{ver.tol:g}); nothing was written. Please report this with the recipe"
            )
        lap("verify")
        log("aru run: evaluating on the test split")
        from transformers import AutoModelForCausalLM

        if adapter:  # base + adapter, merged (on an untied base: the adapter's semantics)
            from aru.lora_peft import attach_adapter

            base_copy = AutoModelForCausalLM.from_pretrained(str(folder), dtype=model.dtype)
            edited = attach_adapter(base_copy, out, merge=True).to(recipe.model.device).eval()
        else:
            edited = AutoModelForCausalLM.from_pretrained(str(out), dtype=model.dtype).to(recipe.model.device).eval()
        tb, tg = prompts.splits["test"]
        n = recipe.eval.max_prompts
        tb, tg = _subset(tb, n, p.seed), _subset(tg, n, p.seed)
        ev = recipe.eval
        cfg = EvalConfig(
            markers=_markers(recipe), max_new_tokens=ev.max_new_tokens, kl_tokens=ev.kl_tokens,
            batch_size=ev.batch_size, system=p.system, raw=p.raw,
        )  # fmt: skip
        rows = evaluate(edited, tokenizer, original=model, bad=tb, good=tg, retain=retain, config=cfg,
                        progress=progress)  # fmt: skip
        org = None
        use_org = is_organism(folder) if ev.organism is None else ev.organism
        if use_org:
            org = organism_table(edited if adapter else out, model, tokenizer)
        lap("evaluate")
        del edited
        ver_d = ver.to_dict() | {"edited": str(final)}  # it was verified in the staging folder
        timings["total"] = round(time.perf_counter() - t0, 2)
        report = {
            "aru_version": __version__,
            "model": recipe.model.id,
            "output": str(final),
            "recipe": recipe.to_dict(),
            "prompts": prompts.counts(),
            "fit": tables,
            "selection": selection.to_dict(),
            "edit": edit.to_dict() | {"output": str(final)},
            "verify": ver_d,
            "evaluation": rows,
            "organism": org,
            "checks": demo_checks(org) if org and org.get("oracle") and "error" not in org["oracle"] else [],
            "timings": timings,
            "torch_threads": torch.get_num_threads(),
        }
        md = report_markdown(report)
        (out / REPORT_MD).write_text(md)
        (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
        from aru.select import plot_pareto

        png = plot_pareto(selection.rows, out / SELECTION_PNG, kl_budget=selection.kl_budget)
        update_provenance(
            out,
            verify=ver_d,
            evaluation=summary_rows(rows, org),
            selection=selection.to_dict(),
            recipe=recipe.text,
            organism=org,
        )
        record_files(out, [REPORT_MD, REPORT_JSON] + ([SELECTION_PNG] if png else []))
        check_provenance(out)
        if final.exists():
            old = work / "old"
            final.replace(old)
        out.replace(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RunResult(final, report, md, timings=timings)
    if push and recipe.push is not None:
        from aru.hub import push as hub_push

        log(f"aru run: pushing to {recipe.push.repo_id}")
        res = hub_push(final, recipe.push.repo_id, private=recipe.push.private)
        result.pushed = getattr(res, "commit_url", None) or recipe.push.repo_id
    log(f"aru run: done in {timings['total']:.1f} s → {final}")
    return result


def demo_text(report: dict[str, Any], output: Path | None) -> str:
    """The demo's printout: the organism table, the targets, the chosen edit."""
    org, sel = report["organism"], report["selection"]
    ch = sel["chosen"]
    lines = [
        "aru demo: the built-in organism (a 4-layer Llama fine-tuned to refuse 4 of 8 topics), held-out test split",
        "",
        organism_markdown(org),
        "",
        *[f"{'PASS' if c['passed'] else 'FAIL'}  {c['check']}: {c['value']}" for c in report["checks"]],
        "",
        f"chosen automatically among {len(sel['candidates'])} candidates: {ch['name']} "
        f"(first-token KL on validation X+ {next(r['kl'] for r in sel['candidates'] if r['chosen']):.3f}, "
        f"budget {sel['kl_budget']:g})",
        f"verify: relative max |Δlogit| {report['verify']['rel_dlogit']:.1e} "
        f"({'passed' if report['verify']['passed'] else 'FAILED'}); total {report['timings']['total']:.1f} s",
    ]
    if output is not None:
        lines.append(f"edited organism: {output} (report.md inside; aru verify {output})")
    return "\n".join(lines)


def run_demo(*, output: str | Path | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the organism recipe (:func:`aru.recipe.organism_recipe`) and return ``{"text", "checks", "organism",
    "selection", "output", "timings"}``; without ``output`` the edited organism goes to a temporary folder that is
    removed afterwards."""
    import torch

    from aru.recipe import organism_recipe

    torch.manual_seed(0)
    recipe = organism_recipe()
    tmp = None
    if output is None:
        tmp = Path(tempfile.mkdtemp(prefix="aru-demo-"))
        target = tmp / "organism-unlearned"
    else:
        target = Path(output)
    try:
        res = run_recipe(recipe, output=target, overwrite=overwrite, push=False, progress=progress)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    kept = None if tmp is not None else res.output
    rep = res.report
    return {
        "text": demo_text(rep, kept),
        "checks": rep["checks"],
        "organism": rep["organism"],
        "selection": {k: v for k, v in rep["selection"].items() if k != "candidates"},
        "output": None if kept is None else str(kept),
        "timings": rep["timings"],
    }
