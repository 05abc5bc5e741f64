"""Automatic selection of the edit: fitting layer × k × estimator × strength λ × edited-layer range.

1. **Refusal tokens.** The original model's greedy generations on validation X− are matched against the refusal
   markers (:mod:`aru.evaluate`); the first tokens of the matching generations, minus those that also open the
   original's non-refusing answers on validation X+ (unless that leaves none), form the refusal-token set R.
2. **Cheap score, with hooks.** Every candidate is applied with :func:`aru.model_edit.projection_hooks` (no weight
   is written) and scored on validation prompts by one forward pass each:

   - ``refusal_prob`` = mean over X− of Σ_{t∈R} p(t | prompt), the probability that the answer starts refusing;
   - ``kl`` = mean over X+ of KL(original ‖ edited) of the first answer token (nats; heretic's measure).

3. **Pareto table.** A candidate is on the Pareto front when no other has both a lower ``refusal_prob`` and a
   lower ``kl`` (one of them strictly).
4. **Confirmation.** The ``confirm`` candidates with ``kl ≤ kl_budget`` and the lowest ``refusal_prob`` are
   confirmed with full greedy generations: behaviour rate on validation X−, over-refusal rate on X+, and
   ``agreement`` on X+ (:func:`answer_agreement`: how much of the original's answer the edited model reproduces).
5. **Choice.** Among the confirmed candidates within the budget, the lowest behaviour rate, then the highest
   agreement, then the lowest KL, then the earliest in the grid. If no candidate is within the budget, the
   lowest-KL ones are confirmed and the choice is flagged ``within_budget = false`` (with an
   :class:`~aru.errors.AruWarning`).

Everything is deterministic given the seed (the validation subset is a seeded sample; ties keep grid order).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aru.directions import Directions
from aru.errors import AruError, AruWarning

EDIT_RANGES = ("all", "from_source", "to_source")


def known_methods() -> tuple[str, ...]:
    """The estimator names :func:`aru.estimators.get_estimator` accepts."""
    from aru.estimators import ESTIMATORS

    return tuple(ESTIMATORS)


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: directions fitted by ``method`` at residual index ``layer`` (the capture
    convention: ℓ is the input of decoder layer ℓ), first ``k`` rows, strength λ, edited decoder layers."""

    method: str
    layer: int
    k: int
    strength: float
    edit: str

    @property
    def name(self) -> str:
        return f"{self.method}@{self.layer} k={self.k} λ={self.strength:g} edit={self.edit}"


def edit_layers(edit: str, source: int, num_layers: int) -> str | None:
    """The ``layers`` argument of :func:`aru.model_edit.make_plan` for an edited-layer range, or None when the
    range is empty for this source:

    - ``all``: every decoder layer and the embeddings;
    - ``from_source``: decoder layers ℓ..L−1, those that read the residual stream at the fitting point ℓ;
    - ``to_source``: decoder layers 0..ℓ−1 and the embeddings, those that wrote it;
    - any :func:`aru.model_edit.parse_layers` spec (``"2-5"``) as given.
    """
    if edit == "all":
        return "all"
    if edit == "from_source":
        return f"{source}-{num_layers - 1}" if source < num_layers else None
    if edit == "to_source":
        return f"0-{source - 1}" if source > 0 else None
    return edit


def candidate_grid(
    fits: Mapping[str, Directions],
    *,
    ks: Sequence[int],
    strengths: Sequence[float],
    edits: Sequence[str],
    num_layers: int,
) -> list[Candidate]:
    """Every valid combination, in a fixed order (method, layer, k, λ, range); k above a basis's size and empty
    ranges are skipped."""
    out = []
    for method, dirs in fits.items():
        for layer in dirs.layers:
            rows = dirs.bases[layer].shape[0]
            for k in sorted(set(ks)):
                if k > rows:
                    continue
                for lam in strengths:
                    for edit in edits:
                        if edit_layers(edit, layer, num_layers) is not None:
                            out.append(Candidate(method, int(layer), int(k), float(lam), edit))
    if not out:
        raise AruError("the selection grid is empty: check fit.k against the methods (diff-means gives k=1)")
    return out


def make_candidate_plan(c: Candidate, fits: Mapping[str, Directions], num_layers: int):
    from aru.model_edit import make_plan

    return make_plan(
        fits[c.method],
        num_layers,
        layers=edit_layers(c.edit, c.layer, num_layers),
        source_layer=c.layer,
        strength=c.strength,
        k=c.k,
    )


def candidate_directions(c: Candidate, fits: Mapping[str, Directions]) -> Directions:
    """The chosen basis as a single-basis directions file (first ``k`` rows of ``method`` at ``layer``)."""
    d = fits[c.method].select(c.layer, c.k)
    meta = dict(d.metadata, method=c.method, fit_layer=str(c.layer), strength=str(c.strength), edit_layers=c.edit)
    return Directions(d.bases, d.hidden_size, meta)


@dataclass
class Selection:
    """The scored grid, the chosen candidate and what it was measured against."""

    rows: list[dict[str, Any]]
    chosen: Candidate
    within_budget: bool
    kl_budget: float
    refusal_tokens: list[str]
    baseline: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_row(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["chosen"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; the chosen candidate's fields are also at the top level (what the model card reads)."""
        return {
            **asdict(self.chosen),
            "behaviour": "refusal (first tokens " + ", ".join(repr(t) for t in self.refusal_tokens) + ")",
            "chosen": asdict(self.chosen) | {"name": self.chosen.name},
            "within_budget": self.within_budget,
            "kl_budget": self.kl_budget,
            "refusal_tokens": self.refusal_tokens,
            "baseline": self.baseline,
            "settings": self.settings,
            "candidates": self.rows,
        }

    def markdown(self) -> str:
        return selection_markdown(self.rows, self.baseline)

    def save(self, folder: str | Path, stem: str = "selection") -> list[Path]:
        """Write ``{stem}.json``, ``{stem}.md`` and, when matplotlib is installed, ``{stem}.png``."""
        folder = Path(folder)
        paths = [folder / f"{stem}.json", folder / f"{stem}.md"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        paths[1].write_text(self.markdown() + "\n")
        png = plot_pareto(self.rows, folder / f"{stem}.png", kl_budget=self.kl_budget)
        return paths + ([png] if png else [])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (a, b) point (both minimised): whether no other point is ≤ in both and < in one."""
    out = []
    for i, (a, b) in enumerate(points):
        dominated = any((a2 <= a and b2 <= b and (a2 < a or b2 < b)) for j, (a2, b2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def refusal_token_set(refusals: Sequence[Sequence[int]], ordinary: Sequence[Sequence[int]]) -> list[int]:
    """The first tokens of ``refusals`` (generations that matched a marker) that do not also open an ``ordinary``
    (non-refusing) answer; all the refusals' first tokens if that leaves none. Sorted token ids."""
    first = {int(g[0]) for g in refusals if len(g)}
    common = {int(g[0]) for g in ordinary if len(g)}
    return sorted(first - common) or sorted(first)


def answer_agreement(original: Sequence[Sequence[int]], edited: Sequence[Sequence[int]]) -> float:
    """Mean over prompts of the fraction of the original's greedy answer that the edited model reproduces
    token for token from the start (length of the common prefix / length of the original answer)."""
    total = 0.0
    for a, b in zip(original, edited, strict=True):
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        total += n / max(len(a), 1)
    return total / max(len(original), 1)


def select(
    model,
    tokenizer,
    fits: Mapping[str, Directions],
    val_bad: Sequence[str],
    val_good: Sequence[str],
    *,
    ks: Sequence[int] = (1,),
    strengths: Sequence[float] = (1.0,),
    edits: Sequence[str] = ("all",),
    kl_budget: float = 0.2,
    confirm: int = 3,
    max_prompts: int = 64,
    max_new_tokens: int = 16,
    seed: int = 0,
    markers: Sequence[str] | None = None,
    system: str | None = None,
    raw: bool = False,
    batch_size: int = 32,
    progress: bool = True,
) -> Selection:
    """Score every candidate of the grid on validation prompts with hooks, confirm the best few with generations
    and choose one under ``kl_budget`` (see the module docstring). ``fits`` maps a method name to its per-layer
    directions (:func:`aru.estimators.fit_from_captures`)."""
    from tqdm.auto import tqdm

    from aru.capture import decoder_layers
    from aru.evaluate import (
        DEFAULT_MARKERS,
        behaviour_rate,
        encode_prompts,
        first_token_logprobs,
        greedy_generate,
        kl_div,
        seeded_subset,
    )
    from aru.model_edit import projection_hooks

    if not val_bad or not val_good:
        raise ValueError("selection needs validation X− and X+ prompts; give prompts.fractions a validation share")
    if confirm < 1 or max_prompts < 1 or kl_budget <= 0:
        raise ValueError(f"confirm={confirm}, max_prompts={max_prompts} must be >= 1 and kl_budget={kl_budget} > 0")
    markers = tuple(markers or DEFAULT_MARKERS)
    num_layers = len(decoder_layers(model)[1])
    grid = candidate_grid(fits, ks=ks, strengths=strengths, edits=edits, num_layers=num_layers)
    bad, good = seeded_subset(val_bad, max_prompts, seed), seeded_subset(val_good, max_prompts, seed + 1)
    bad_ids = encode_prompts(tokenizer, bad, system=system, raw=raw)
    good_ids = encode_prompts(tokenizer, good, system=system, raw=raw)
    gen_kw = dict(markers=markers, max_new_tokens=max_new_tokens, batch_size=batch_size, system=system, raw=raw)

    # 1. the refusal-token set from the original model's own refusals
    from aru.evaluate import compile_markers, match_marker

    gens = greedy_generate(
        model, tokenizer, bad_ids, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
        desc="select: original X−",
    )  # fmt: skip
    compiled = compile_markers(markers)
    texts = [tokenizer.decode(g, skip_special_tokens=True) for g in gens]
    refusing = [g for g, t in zip(gens, texts, strict=True) if g and match_marker(t, compiled)]
    if not refusing:
        raise AruError(
            f"the model shows no refusal on the {len(bad)} validation X− prompts (no generation matched a marker, "
            f"e.g. {texts[0][:80]!r}); check prompts.bad and eval.markers"
        )
    # first tokens that also open the original's ordinary answers on X+ ("I'd be happy to ...") say nothing
    good_gens = greedy_generate(
        model, tokenizer, good_ids, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
        desc="select: original X+",
    )  # fmt: skip
    good_texts = [tokenizer.decode(g, skip_special_tokens=True) for g in good_gens]
    good_hits = [match_marker(t, compiled) is not None for t in good_texts]
    refusal_ids = refusal_token_set(refusing, [g for g, hit in zip(good_gens, good_hits, strict=True) if not hit])
    r_idx = torch.tensor(refusal_ids)

    base_bad = first_token_logprobs(model, tokenizer, bad_ids, batch_size=batch_size)
    base_good = first_token_logprobs(model, tokenizer, good_ids, batch_size=batch_size)
    baseline = {
        "refusal_prob": float(base_bad[:, r_idx].exp().sum(-1).mean()),
        "refusal_prob_good": float(base_good[:, r_idx].exp().sum(-1).mean()),
        "behaviour_rate": len(refusing) / len(bad),
        "over_refusal_rate": sum(good_hits) / len(good),
        "n_bad": len(bad),
        "n_good": len(good),
    }

    # 2. cheap scores with hooks
    rows: list[dict[str, Any]] = []
    for c in tqdm(grid, desc="select: score", unit="candidate", file=sys.stderr, disable=not progress):
        plan = make_candidate_plan(c, fits, num_layers)
        with projection_hooks(model, plan):
            lb = first_token_logprobs(model, tokenizer, bad_ids, batch_size=batch_size)
            lg = first_token_logprobs(model, tokenizer, good_ids, batch_size=batch_size)
        rows.append(
            {
                **asdict(c),
                "name": c.name,
                "refusal_prob": float(lb[:, r_idx].exp().sum(-1).mean()),
                "refusal_top1": float(torch.isin(lb.argmax(-1), r_idx).float().mean()),
                "kl": float(kl_div(base_good, lg).mean()),
                "behaviour_rate": None,
                "over_refusal_rate": None,
                "agreement": None,
                "confirmed": False,
                "chosen": False,
            }
        )
    for row, on in zip(rows, pareto_front([(r["refusal_prob"], r["kl"]) for r in rows]), strict=True):
        row["pareto"] = on
        row["within_budget"] = row["kl"] <= kl_budget

    # 3. confirm the best few with generations
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["refusal_prob"], rows[i]["kl"], i))
    within = [i for i in order if rows[i]["within_budget"]]
    to_confirm = within[:confirm]
    if not to_confirm:
        to_confirm = sorted(range(len(rows)), key=lambda i: (rows[i]["kl"], rows[i]["refusal_prob"], i))[:confirm]
    for i in to_confirm:
        c = grid[i]
        with projection_hooks(model, make_candidate_plan(c, fits, num_layers)):
            rb = behaviour_rate(model, tokenizer, bad, progress=progress, desc=f"confirm {c.name}", **gen_kw)
            edited_good = greedy_generate(
                model, tokenizer, good_ids, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False
            )
        texts_g = [tokenizer.decode(g, skip_special_tokens=True) for g in edited_good]
        rows[i].update(
            behaviour_rate=rb["rate"],
            over_refusal_rate=sum(match_marker(t, compiled) is not None for t in texts_g) / len(good),
            agreement=answer_agreement(good_gens, edited_good),
            confirmed=True,
        )

    best = min(to_confirm, key=lambda i: (rows[i]["behaviour_rate"], -rows[i]["agreement"], rows[i]["kl"], i))
    rows[best]["chosen"] = True
    ok = bool(rows[best]["within_budget"])
    if not ok:
        warnings.warn(
            f"no candidate keeps the first-token KL within select.kl_budget = {kl_budget} (lowest: "
            f"{rows[best]['kl']:.3f}); chose {grid[best].name}. Raise kl_budget or try other layers/strengths",
            AruWarning,
            stacklevel=2,
        )
    settings = {
        "ks": list(ks),
        "strengths": list(strengths),
        "edits": list(edits),
        "confirm": confirm,
        "max_prompts": max_prompts,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "methods": list(fits),
    }
    return Selection(
        rows=rows,
        chosen=grid[best],
        within_budget=ok,
        kl_budget=kl_budget,
        refusal_tokens=[tokenizer.decode([t]) for t in refusal_ids],
        baseline=baseline,
        settings=settings,
    )


def _f(v, nd: int = 4) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def selection_markdown(rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None) -> str:
    """The candidate table as markdown, sorted by refusal probability then KL (chosen row in bold, Pareto ◆)."""
    head = (
        "| method | layer | k | λ | edit | P(refusal token) | KL first token | Pareto | behaviour | over-refusal "
        "| X+ agreement |"
    )
    lines = [head, "|---|---:|---:|---:|---|---:|---:|:-:|---:|---:|---:|"]
    if baseline:
        lines.append(
            f"| *original* | | | | | {_f(baseline.get('refusal_prob'))} | 0.0000 | | "
            f"{_f(baseline.get('behaviour_rate'), 3)} | {_f(baseline.get('over_refusal_rate'), 3)} | 1.000 |"
        )
    for r in sorted(rows, key=lambda r: (r["refusal_prob"], r["kl"])):
        cells = [
            r["method"],
            str(r["layer"]),
            str(r["k"]),
            f"{r['strength']:g}",
            r["edit"],
            _f(r["refusal_prob"]),
            _f(r["kl"]),
            "◆" if r.get("pareto") else "",
            _f(r.get("behaviour_rate"), 3),
            _f(r.get("over_refusal_rate"), 3),
            _f(r.get("agreement"), 3),
        ]
        if r.get("chosen"):
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pareto(rows: Sequence[Mapping[str, Any]], path: str | Path, *, kl_budget: float | None = None) -> Path | None:
    """A scatter plot of KL against refusal probability (Pareto front joined, chosen starred) as PNG; None when
    matplotlib (the ``plot`` extra) is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter([r["kl"] for r in rows], [r["refusal_prob"] for r in rows], s=14, c="grey", label="candidates")
    front = sorted((r["kl"], r["refusal_prob"]) for r in rows if r.get("pareto"))
    if front:
        ax.plot(*zip(*front, strict=True), "o-", c="tab:blue", ms=4, label="Pareto front")
    for r in rows:
        if r.get("chosen"):
            ax.scatter([r["kl"]], [r["refusal_prob"]], marker="*", s=160, c="tab:red", label=f"chosen: {r['name']}")
    if kl_budget is not None:
        ax.axvline(kl_budget, ls="--", c="tab:orange", lw=1, label=f"KL budget {kl_budget:g}")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(left=0)
    ax.set_xlabel("first-token KL on validation X+ (nats)")
    ax.set_ylabel("P(refusal token) on validation X−")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
