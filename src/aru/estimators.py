"""Estimators of the bias directions that separate X− (the behaviour to remove, e.g. prompts the model refuses) from
X+ (prompts it answers), from per-class streaming statistics of residual-stream activations φ.

Notation, per layer: for class c ∈ {+, −} with n_c samples, μ_c = E_c[φ] (d,), C_c = Cov_c(φ) (d, d, population,
ddof = 0), S_c = E_c[φ φᵀ] = C_c + μ_c μ_cᵀ. Pooled over X+ ∪ X− (n = n₊ + n₋):
μ = (n₊μ₊ + n₋μ₋)/n, S = (n₊S₊ + n₋S₋)/n, C = S − μ μᵀ. All in float64 (:mod:`aru.stats`).

Every estimator has one interface (:class:`Fitter`): ``fitter.update(bad, good) -> self`` (activations) or
``fitter.update_stats(bad_stats, good_stats) -> self``, then ``fitter.result() -> Directions``. Each returned
basis Q (k, d) is orthonormal and oriented so that X− projects positive: for every row q, μ₋ᵀq > μ₊ᵀq.
The result's extras hold, per layer i: ``scores.layer.i`` (k,), ``explained_variance.layer.i`` (k,),
``variance_rank.layer.i`` (k,) and, when held-out activations are given, ``auroc.layer.i`` (k,).

Methods (:func:`get_estimator`):

- ``pca-omega`` (:class:`PcaOmegaFitter`), aru's defining method. PCA over φ on X+ ∪ X−: the eigenvectors ρ₁..ρ_d
  of S (``pca="uncentred"``, the default) or of C (``pca="centred"``), ordered by eigenvalue (variance rank).
  Optionally keep only the top ``top_m`` by eigenvalue as candidates. Score each candidate ρ with (``score=``)

  - ``omega`` (default): ω_ρ = ½ ( |μ₊ᵀρ| / ρᵀC₊ρ + |μ₋ᵀρ| / ρᵀC₋ρ ),
    i.e. |E[φ·ρ]| / Var(φ·ρ) computed over X+ and over X− and averaged;
  - ``std`` (scale-free): ½ ( |μ₊ᵀρ| / √(ρᵀC₊ρ) + |μ₋ᵀρ| / √(ρᵀC₋ρ) );
  - ``fisher`` (scale-free): (μ₋ᵀρ − μ₊ᵀρ)² / (ρᵀC₊ρ + ρᵀC₋ρ);

  each variance is floored at 1e-12 · tr(C)/d so a zero-variance component cannot divide by zero. Q is the top k
  candidates by score (ties keep variance order), each sign-flipped so that μ₋ᵀq ≥ μ₊ᵀq.
  Explained variance of ρ: λ_ρ / Σλ (eigenvalues of the matrix PCA was run on).
- ``diff-means`` (:class:`DiffMeansFitter`): q = (μ₋ − μ₊) / ‖μ₋ − μ₊‖ (k = 1).
- ``projected`` (:class:`ProjectedFitter`): r = μ₋ − μ₊ minus its component along μ₊,
  r' = r − (rᵀμ̂₊) μ̂₊ with μ̂₊ = μ₊/‖μ₊‖, q = r'/‖r'‖ (k = 1).

For the difference-of-means methods the score is ‖μ₋ − μ₊‖ (resp. ‖r'‖) and the explained variance is
qᵀCq / tr(C) (NaN when the statistics hold means only).

Held-out separation: AUROC of the projection φ·q, the probability that a held-out X− sample projects above a
held-out X+ sample (ties count ½); 0.5 is chance, 1.0 perfect separation in the oriented direction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aru.capture import CaptureResult, capture, parse_position
from aru.directions import ALL, Directions, LayerKey
from aru.errors import AruWarning, DirectionsError
from aru.prompts import format_prompts, split_prompts
from aru.stats import StreamingStats, pooled

PCA_MODES = ("uncentred", "centred")
SCORES = ("omega", "std", "fisher")


@dataclass(frozen=True)
class LayerFit:
    """One layer's fitted basis and per-component diagnostics."""

    basis: torch.Tensor  # (k, d) float32, orthonormal, X− projects positive
    scores: torch.Tensor  # (k,) float64
    explained_variance: torch.Tensor  # (k,) float64
    variance_rank: torch.Tensor  # (k,) int64: 0-based rank of the component by variance (−1 if not from PCA)


class Fitter:
    """Base of every estimator: accumulates per-layer, per-class statistics; :meth:`fit_layer` is the math."""

    name = ""
    needs_moments = True
    max_k: int | None = None

    def __init__(self, k: int = 1):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} must be an integer >= 1")
        if self.max_k is not None and k > self.max_k:
            raise ValueError(f"{self.name} gives {self.max_k} direction per layer, not k={k}; use k=1 or pca-omega")
        self.k = k
        self._bad: dict[LayerKey, StreamingStats] = {}
        self._good: dict[LayerKey, StreamingStats] = {}

    def options(self) -> dict[str, str]:
        """The estimator's options, as directions-file metadata."""
        return {"method": self.name, "k": str(self.k)}

    @staticmethod
    def _as_map(x) -> dict[LayerKey, Any]:
        if x is None:
            return {}
        return dict(x) if isinstance(x, Mapping) else {ALL: x}

    def update(self, bad=None, good=None) -> Fitter:
        """Add activations: ``bad`` (X−) and/or ``good`` (X+), each (n, d) or {layer: (n, d)}."""
        for store, acts in ((self._bad, self._as_map(bad)), (self._good, self._as_map(good))):
            for key, x in acts.items():
                if key not in store:
                    store[key] = StreamingStats(x.shape[-1], self.needs_moments)
                store[key].update(x)
        return self

    def update_stats(self, bad=None, good=None) -> Fitter:
        """Add already accumulated statistics: each a :class:`StreamingStats` or {layer: StreamingStats}."""
        for store, st in ((self._bad, self._as_map(bad)), (self._good, self._as_map(good))):
            for key, s in st.items():
                if self.needs_moments and not s.moments:
                    raise ValueError(f"{self.name} needs second moments; capture with moments=True")
                if key not in store:
                    store[key] = StreamingStats(s.dim, self.needs_moments)
                store[key].merge(s)
        return self

    def layer_fits(self) -> dict[LayerKey, LayerFit]:
        keys = sorted(set(self._bad) | set(self._good), key=str)
        if not keys:
            raise ValueError(f"{self.name}: no activations yet; call update(bad=..., good=...) first")
        out = {}
        for key in keys:
            b, g = self._bad.get(key), self._good.get(key)
            if b is None or g is None or b.count == 0 or g.count == 0:
                raise ValueError(f"{self.name}: layer {key!r} needs activations of both X− (bad) and X+ (good)")
            out[key] = self.fit_layer(b, g)
        return out

    def fit_layer(self, bad: StreamingStats, good: StreamingStats) -> LayerFit:
        raise NotImplementedError

    def result(self, heldout: Mapping[LayerKey, tuple[torch.Tensor, torch.Tensor]] | None = None) -> Directions:
        """The fitted bases as :class:`Directions` (one basis per layer key), with per-layer extras; ``heldout``
        ({layer: (X− activations, X+ activations)}) adds ``auroc.layer.i``."""
        fits = self.layer_fits()
        return _to_directions(fits, self.options(), heldout)


class PcaOmegaFitter(Fitter):
    """PCA + ω (see the module docstring for the exact formulas)."""

    name = "pca-omega"

    def __init__(self, k: int = 1, *, pca: str = "uncentred", score: str = "omega", top_m: int | None = None):
        super().__init__(k)
        if pca not in PCA_MODES:
            raise ValueError(f"pca={pca!r}; use one of {PCA_MODES}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}; use one of {SCORES}")
        if top_m is not None and (isinstance(top_m, bool) or not isinstance(top_m, int) or top_m < k):
            raise ValueError(f"top_m={top_m!r} must be an integer >= k={k} (or None for every component)")
        self.pca, self.score, self.top_m = pca, score, top_m

    def options(self) -> dict[str, str]:
        return {**super().options(), "pca": self.pca, "score": self.score, "top_m": str(self.top_m or "")}

    def fit_layer(self, bad: StreamingStats, good: StreamingStats) -> LayerFit:
        d = bad.dim
        if self.k >= d:
            raise ValueError(f"k={self.k} must be smaller than the hidden size {d}")
        pool = pooled(bad, good)
        c_pool = pool.covariance()
        mat = pool.second_moment() if self.pca == "uncentred" else c_pool
        evals, evecs = torch.linalg.eigh((mat + mat.T) / 2)  # ascending
        order = torch.argsort(evals, descending=True, stable=True)
        evals, comps = evals[order], evecs[:, order].T  # comps: (d, d), row j = component of variance rank j
        m = d if self.top_m is None else min(self.top_m, d)
        comps = comps[:m]
        e_good, e_bad = comps @ good.mean, comps @ bad.mean  # (m,)
        floor = 1e-12 * max(float(torch.trace(c_pool)) / d, 1e-30)
        v_good = ((comps @ good.covariance()) * comps).sum(1).clamp(min=0) + floor  # (m,)
        v_bad = ((comps @ bad.covariance()) * comps).sum(1).clamp(min=0) + floor
        if self.score == "omega":
            score = 0.5 * (e_good.abs() / v_good + e_bad.abs() / v_bad)
        elif self.score == "std":
            score = 0.5 * (e_good.abs() / v_good.sqrt() + e_bad.abs() / v_bad.sqrt())
        else:
            score = (e_bad - e_good) ** 2 / (v_good + v_bad)
        top = torch.argsort(score, descending=True, stable=True)[: self.k]
        sign = torch.sign(e_bad - e_good)[top]
        sign[sign == 0] = 1
        q = comps[top] * sign[:, None]
        total = evals.clamp(min=0).sum()
        ev = evals[top].clamp(min=0) / total if total > 0 else torch.zeros(len(top), dtype=torch.float64)
        return LayerFit(q.to(torch.float32).contiguous(), score[top], ev, top.to(torch.int64))


class DiffMeansFitter(Fitter):
    """Difference of means: q = (μ₋ − μ₊)/‖μ₋ − μ₊‖."""

    name = "diff-means"
    needs_moments = False
    max_k = 1

    def direction(self, bad: StreamingStats, good: StreamingStats) -> torch.Tensor:
        return bad.mean - good.mean

    def fit_layer(self, bad: StreamingStats, good: StreamingStats) -> LayerFit:
        r = self.direction(bad, good)
        norm = float(r.norm())
        scale = float(bad.mean.norm() + good.mean.norm())
        if not math.isfinite(norm) or norm <= 1e-10 * max(scale, 1e-30):
            raise DirectionsError(
                f"{self.name}: X− and X+ have the same mean activation here (‖μ₋ − μ₊‖ = {norm:.2e}), so there is "
                "no direction to fit; choose other layers or positions"
            )
        q = (r / norm)[None]  # (1, d)
        if bad.moments and good.moments:
            c = pooled(bad, good).covariance()
            tr = float(torch.trace(c))
            ev = torch.tensor([float(q[0] @ c @ q[0]) / tr if tr > 0 else 0.0], dtype=torch.float64)
        else:
            ev = torch.tensor([float("nan")], dtype=torch.float64)
        return LayerFit(q.to(torch.float32), torch.tensor([norm], dtype=torch.float64), ev, torch.tensor([-1]))


class ProjectedFitter(DiffMeansFitter):
    """Difference of means with its component along μ₊ removed: r' = r − (rᵀμ̂₊)μ̂₊, q = r'/‖r'‖."""

    name = "projected"

    def direction(self, bad: StreamingStats, good: StreamingStats) -> torch.Tensor:
        r = bad.mean - good.mean
        gn = good.mean.norm()
        if float(gn) == 0.0:
            return r
        u = good.mean / gn
        return r - (r @ u) * u


ESTIMATORS: dict[str, type[Fitter]] = {
    "pca-omega": PcaOmegaFitter,
    "diff-means": DiffMeansFitter,
    "projected": ProjectedFitter,
}


def get_estimator(name: str, **options) -> Fitter:
    """A fresh fitter for method ``name`` (``pca-omega``, ``diff-means``, ``projected``) with ``options``
    (``k`` and, for pca-omega, ``pca``, ``score``, ``top_m``)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"method {name!r} does not take these options {sorted(options)}: {exc}") from exc


def auroc(bad: torch.Tensor, good: torch.Tensor) -> float:
    """P(a bad score > a good score) + ½ P(tie), from the Mann–Whitney U statistic with average ranks for ties."""
    nb, ng = bad.numel(), good.numel()
    if nb == 0 or ng == 0:
        return float("nan")
    x = torch.cat([bad.reshape(-1), good.reshape(-1)]).to(torch.float64)
    ranks = torch.empty_like(x)
    ranks[torch.argsort(x, stable=True)] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    _, inv, counts = torch.unique(x, return_inverse=True, return_counts=True)
    avg = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inv, ranks) / counts
    u = float(avg[inv][:nb].sum()) - nb * (nb + 1) / 2
    return u / (nb * ng)


def separation(bad: torch.Tensor, good: torch.Tensor) -> float:
    """(mean(bad) − mean(good)) / √(½(var(bad) + var(good))) of 1-D projections (d′)."""
    b, g = bad.to(torch.float64), good.to(torch.float64)
    pooled_var = 0.5 * (b.var(correction=0) + g.var(correction=0))
    return float((b.mean() - g.mean()) / pooled_var.clamp(min=1e-30).sqrt())


def _to_directions(fits, options, heldout) -> Directions:
    d = next(iter(fits.values())).basis.shape[1]
    extras = {}
    for key, f in fits.items():
        extras[f"scores.layer.{key}"] = f.scores.to(torch.float32)
        extras[f"explained_variance.layer.{key}"] = f.explained_variance.to(torch.float32)
        extras[f"variance_rank.layer.{key}"] = f.variance_rank
        if heldout is not None and key in heldout:
            xb, xg = heldout[key]
            q = f.basis.to(torch.float64)
            pb, pg = xb.to(torch.float64) @ q.T, xg.to(torch.float64) @ q.T  # (n, k)
            aucs = [auroc(pb[:, j], pg[:, j]) for j in range(q.shape[0])]
            extras[f"auroc.layer.{key}"] = torch.tensor(aucs, dtype=torch.float64)
    return Directions({key: f.basis for key, f in fits.items()}, d, dict(options), extras)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline: capture both classes once, then fit any number of methods / k from the captures.


@dataclass
class ClassCaptures:
    """Training statistics of X− and X+ and held-out activations, at every captured layer: the input of
    :func:`fit_from_captures`, so several methods and k can be fitted from one capture."""

    train_bad: CaptureResult
    train_good: CaptureResult
    heldout_bad: dict[int, torch.Tensor]  # layer -> (n, d) float32
    heldout_good: dict[int, torch.Tensor]
    heldout: str  # "val" (given), "holdout" (split off the training prompts) or "train" (no held-out prompts)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return self.train_bad.layers


@dataclass
class FitResult:
    """Fitted directions (one basis per layer, ``default_layer`` = best held-out separation) and a per-layer table."""

    directions: Directions
    table: list[dict[str, Any]]
    default_layer: int

    def to_dict(self) -> dict[str, Any]:
        def clean(v):  # NaN (e.g. explained variance without second moments) is not JSON
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return [clean(x) for x in v] if isinstance(v, list) else v

        return {
            "default_layer": self.default_layer,
            "metadata": dict(self.directions.metadata),
            "layers": [{key: clean(v) for key, v in row.items()} for row in self.table],
        }


CAPTURE_OPTIONS = ("overflow", "max_length", "padding_side", "post_tokens")


def capture_sets(
    model,
    tokenizer,
    bad: Sequence[str],
    good: Sequence[str],
    *,
    layers: Sequence[int] | int | None = None,
    position: str = "last",
    batch_size: int = 16,
    val_bad: Sequence[str] | None = None,
    val_good: Sequence[str] | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    system: str | None = None,
    raw: bool = False,
    moments: bool = True,
    progress: bool = False,
    **capture_options,
) -> ClassCaptures:
    """Format (chat template, or ``raw``) and capture the user prompts ``bad`` (X−) and ``good`` (X+) at
    ``layers`` (default 1..L; see :mod:`aru.capture`) in one truncated forward per batch, plus held-out prompts:
    ``val_bad``/``val_good`` if given, else a deterministic ``holdout`` fraction split off each training set
    (``holdout=0``: none, separation is then measured on the training prompts)."""
    unknown = set(capture_options) - set(CAPTURE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; capture takes {CAPTURE_OPTIONS}")
    parse_position(position)
    bad, good = list(bad), list(good)
    if not bad or not good:
        raise ValueError(f"need prompts in both sets (got {len(bad)} bad, {len(good)} good)")
    if (val_bad is None) != (val_good is None):
        raise ValueError("pass both val_bad and val_good, or neither")
    if val_bad is not None:
        kind, vb, vg = "val", list(val_bad), list(val_good)
        if not vb or not vg:
            raise ValueError("val_bad and val_good must not be empty")
    elif holdout > 0 and min(len(bad), len(good)) * holdout >= 1:
        kind = "holdout"
        sb = split_prompts(bad, fractions=(1 - holdout, holdout, 0.0), seed=seed)
        sg = split_prompts(good, fractions=(1 - holdout, holdout, 0.0), seed=seed)
        bad, vb, good, vg = sb.train, sb.val, sg.train, sg.val
    else:
        kind, vb, vg = "train", None, None
    if raw and parse_position(position).kind == "all":
        capture_options.setdefault("post_tokens", 0)  # raw prompts have no template suffix: every token
    common = dict(layers=layers, position=position, batch_size=batch_size, **capture_options)

    def run(prompts, desc, keep, mom):
        texts = format_prompts(tokenizer, prompts, system=system, raw=raw)
        return capture(model, tokenizer, texts, keep=keep, moments=mom, progress=desc if progress else False, **common)

    tb = run(bad, "capture X− (bad)", kind == "train", moments)
    tg = run(good, "capture X+ (good)", kind == "train", moments)
    if kind == "train":
        hb, hg = tb.activations, tg.activations
    else:
        hb = run(vb, "capture held-out X−", True, False).activations
        hg = run(vg, "capture held-out X+", True, False).activations
    cfg = model.config
    meta = {
        "position": tb.position,
        "model_type": str(getattr(cfg, "model_type", "")),
        "base_model": str(getattr(cfg, "_name_or_path", "") or getattr(model, "name_or_path", "")),
        "n_bad": str(tb.n_prompts),
        "n_good": str(tg.n_prompts),
        "heldout": kind,
        "chat_template": "raw" if raw else "model",
    }
    if system:
        meta["system"] = system
    return ClassCaptures(tb, tg, hb, hg, kind, meta)


def fit_from_captures(captures: ClassCaptures, *, method: str = "pca-omega", k: int = 1, **options) -> FitResult:
    """Fit ``method`` with ``k`` directions at every captured layer from ``captures`` (no forward pass).

    Table rows (one per layer): ``layer``; ``score`` (the first component's score: ω for pca-omega);
    ``auroc`` (first component, held-out) and ``auroc_k`` (every component); ``separation`` (held-out d′ of the
    first component); ``cos_diff_means`` (cosine of the first direction with the diff-means direction at that
    layer); ``explained_variance`` and ``variance_rank`` (first component). ``default_layer`` is the layer with the
    highest held-out AUROC (to 3 decimals), ties broken by the larger held-out d′.
    """
    fitter = get_estimator(method, k=k, **options)
    layers = captures.layers
    tb, tg = captures.train_bad.stats, captures.train_good.stats
    if fitter.needs_moments and not all(tb[ly].moments and tg[ly].moments for ly in layers):
        raise ValueError(f"{method} needs second moments but these captures hold means only; capture with moments=True")
    fits: dict[int, LayerFit] = {}
    dropped = []
    for ly in layers:
        diff = tb[ly].mean - tg[ly].mean
        if float(diff.norm()) <= 1e-10 * max(float(tb[ly].mean.norm() + tg[ly].mean.norm()), 1e-30):
            dropped.append(ly)
            continue
        fits[ly] = fitter.fit_layer(tb[ly], tg[ly])
    if not fits:
        raise DirectionsError(
            f"X− and X+ have identical mean activations at every requested layer {layers}; choose deeper layers "
            "or another --position"
        )
    if dropped:
        warnings.warn(
            f"layers {dropped} skipped: X− and X+ have identical mean activations there (e.g. the embedding of the "
            "same last token)",
            AruWarning,
            stacklevel=2,
        )
    heldout = {ly: (captures.heldout_bad[ly], captures.heldout_good[ly]) for ly in fits}
    base = _to_directions(fits, fitter.options(), heldout)
    table = []
    for ly, f in fits.items():
        dm = tb[ly].mean - tg[ly].mean
        dm = dm / dm.norm()
        xb, xg = heldout[ly]
        q0 = f.basis[0].to(torch.float64)
        pb, pg = xb.to(torch.float64) @ q0, xg.to(torch.float64) @ q0
        table.append(
            {
                "layer": ly,
                "score": float(f.scores[0]),
                "auroc": float(base.extras[f"auroc.layer.{ly}"][0]),
                "auroc_k": [float(a) for a in base.extras[f"auroc.layer.{ly}"]],
                "separation": separation(pb, pg),
                "cos_diff_means": float(q0 @ dm),
                "explained_variance": float(f.explained_variance[0]),
                "variance_rank": int(f.variance_rank[0]),
            }
        )
    best = max(table, key=lambda r: (round(r["auroc"], 3), r["separation"]))["layer"]
    meta = {
        **captures.metadata,
        **base.metadata,
        "layers": ",".join(str(ly) for ly in fits),
        "default_layer": str(best),
    }
    directions = Directions(base.bases, base.hidden_size, meta, base.extras)
    return FitResult(directions, table, best)


def fit_directions(
    model,
    tokenizer,
    bad: Sequence[str],
    good: Sequence[str],
    *,
    method: str = "pca-omega",
    layers: Sequence[int] | int | None = None,
    k: int = 1,
    position: str = "last",
    batch_size: int = 16,
    val_bad: Sequence[str] | None = None,
    val_good: Sequence[str] | None = None,
    **options,
) -> FitResult:
    """Fit bias directions from user prompts ``bad`` (X−) and ``good`` (X+): :func:`capture_sets` (one truncated
    forward per batch for all ``layers``) then :func:`fit_from_captures`.

    ``options`` go to the estimator (``pca``, ``score``, ``top_m``) or to :func:`capture_sets` (``holdout``,
    ``seed``, ``system``, ``raw``, ``progress``, ``overflow``, ``max_length``, ``padding_side``, ``post_tokens``).
    """
    cap_keys = {"holdout", "seed", "system", "raw", "progress", *CAPTURE_OPTIONS}
    cap_opts = {key: v for key, v in options.items() if key in cap_keys}
    est_opts = {key: v for key, v in options.items() if key not in cap_keys}
    fitter = get_estimator(method, k=k, **est_opts)  # fail fast on a bad method or option
    captures = capture_sets(
        model,
        tokenizer,
        bad,
        good,
        layers=layers,
        position=position,
        batch_size=batch_size,
        val_bad=val_bad,
        val_good=val_good,
        moments=fitter.needs_moments,
        **cap_opts,
    )
    return fit_from_captures(captures, method=method, k=k, **est_opts)


def format_table(result: FitResult) -> str:
    """The per-layer table as aligned text (the default layer marked with *)."""
    head = f"{'layer':>5}  {'score':>10}  {'AUROC':>6}  {'d′':>6}  {'cos(dm)':>7}  {'expl.var':>8}  {'var.rank':>8}"
    lines = [head]
    for r in result.table:
        mark = "*" if r["layer"] == result.default_layer else " "
        lines.append(
            f"{r['layer']:>4}{mark}  {r['score']:>10.4g}  {r['auroc']:>6.3f}  {r['separation']:>6.2f}  "
            f"{r['cos_diff_means']:>7.3f}  {r['explained_variance']:>8.4f}  {r['variance_rank']:>8}"
        )
    held = result.directions.metadata.get("heldout", "")
    lines.append(f"* default layer (best held-out AUROC; held-out set: {held})")
    return "\n".join(lines)


def fit_to_file(
    model: str,
    bad: str,
    good: str,
    out: str,
    *,
    val_bad: str | None = None,
    val_good: str | None = None,
    field: str | None = None,
    column: str | None = None,
    tokenizer: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    device_map: str | None = None,
    force: bool = False,
    **fit_options,
) -> FitResult:
    """``aru fit``: load the model (folder or Hub id) and the prompt files, :func:`fit_directions`, and write the
    directions file ``out`` atomically (nothing is written if anything fails); an existing ``out`` is replaced only
    when it is an earlier aru directions file and ``force`` is set (:mod:`aru.outputs`)."""
    from pathlib import Path

    from aru.capture import load_model
    from aru.directions import save_directions
    from aru.outputs import Output
    from aru.prompts import load_prompts

    out_path = Path(out)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"output {out!r} must end in .safetensors (e.g. -o directions.safetensors)")
    if out_path.exists() and out_path.is_dir():
        raise FileExistsError(f"output {out!r} is a folder; give a file name like {out}/directions.safetensors")
    reads = [model, tokenizer, bad, good, val_bad, val_good]  # never write into or over what is read
    inputs = [p for p in reads if p and Path(p).expanduser().exists()]
    with Output(out_path, "directions", force=force, inputs=inputs) as claim:
        sets = {
            name: load_prompts(path, field=field, column=column) if path else None
            for name, path in (("bad", bad), ("good", good), ("val_bad", val_bad), ("val_good", val_good))
        }
        mdl, tok = load_model(model, tokenizer=tokenizer, dtype=dtype, device=device, device_map=device_map)
        res = fit_directions(
            mdl, tok, sets["bad"], sets["good"], val_bad=sets["val_bad"], val_good=sets["val_good"], **fit_options
        )
        meta = dict(res.directions.metadata, base_model=str(model))
        directions = Directions(res.directions.bases, res.directions.hidden_size, meta, res.directions.extras)
        save_directions(directions, claim.staging)
        claim.commit()
    return FitResult(directions, res.table, res.default_layer)
