import json

import pytest
import torch

from aru.directions import ALL, load_directions, save_directions
from aru.estimators import ESTIMATORS, auroc, get_estimator
from aru.stats import StreamingStats

D = 12


def _data(seed=0, n_bad=300, n_good=250):
    """Two classes: shared anisotropic noise, X− shifted along a fixed direction."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.2, 3.0, D, dtype=torch.float64)
    mix = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0]
    base = torch.randn(D, generator=g, dtype=torch.float64) * 2
    shift = torch.randn(D, generator=g, dtype=torch.float64) * 1.5
    good = (torch.randn(n_good, D, generator=g, dtype=torch.float64) * scales) @ mix + base
    bad = (torch.randn(n_bad, D, generator=g, dtype=torch.float64) * scales) @ mix + base + shift
    return bad, good


CONFIGS = [
    ("pca-omega", {"k": 1}),
    ("pca-omega", {"k": 3}),
    ("pca-omega", {"k": 2, "pca": "centred"}),
    ("pca-omega", {"k": 2, "score": "std", "top_m": 5}),
    ("pca-omega", {"k": 2, "score": "fisher"}),
    ("pca-omega", {"k": 2, "bias": "other", "outliers": 2}),
    ("pca-omega-seed", {"k": 2}),
    ("diff-means", {}),
    ("projected", {}),
]


@pytest.mark.parametrize("method,opts", CONFIGS)
def test_orthonormal_oriented_and_batch_invariant(method, opts):
    bad, good = _data()
    one = get_estimator(method, **opts).update(bad=bad, good=good).result()
    q = one.basis(ALL).double()
    k = opts.get("k", 1)
    assert q.shape == (k, D)
    torch.testing.assert_close(q @ q.T, torch.eye(k, dtype=torch.float64), atol=1e-6, rtol=0)
    assert ((bad @ q.T).mean(0) > (good @ q.T).mean(0)).all()  # X− projects positive
    # other batch sizes and another order of the samples and of the batches
    perm_b, perm_g = torch.randperm(len(bad)), torch.randperm(len(good))
    fitter = get_estimator(method, **opts)
    for xg in good[perm_g].split(31):
        fitter.update(good=xg)
    for xb in bad[perm_b].split(7):
        fitter.update(bad=xb)
    other = fitter.result()
    torch.testing.assert_close(other.basis(ALL), one.basis(ALL), atol=1e-5, rtol=0)
    for name in one.extras:
        torch.testing.assert_close(other.extras[name], one.extras[name], atol=1e-5, rtol=1e-5, equal_nan=True)


def _omega_bruteforce(bad, good, pca="uncentred", score="omega"):
    both = torch.cat([bad, good])
    mat = both.T @ both / len(both) if pca == "uncentred" else torch.cov(both.T, correction=0)
    evals, evecs = torch.linalg.eigh(mat)
    comps = evecs[:, evals.argsort(descending=True)].T
    out = []
    for rho in comps:
        pb, pg = bad @ rho, good @ rho
        if score == "omega":
            out.append(0.5 * (pg.mean().abs() / pg.var(correction=0) + pb.mean().abs() / pb.var(correction=0)))
        elif score == "std":
            out.append(0.5 * (pg.mean().abs() / pg.std(correction=0) + pb.mean().abs() / pb.std(correction=0)))
        else:
            out.append((pb.mean() - pg.mean()) ** 2 / (pb.var(correction=0) + pg.var(correction=0)))
    return comps, torch.stack(out)


@pytest.mark.parametrize("pca", ["uncentred", "centred"])
@pytest.mark.parametrize("score", ["omega", "std", "fisher"])
def test_pca_omega_matches_definition(pca, score):
    bad, good = _data(seed=3)
    comps, scores = _omega_bruteforce(bad, good, pca, score)
    top = scores.argsort(descending=True)[:2]
    d = get_estimator("pca-omega-seed", k=2, pca=pca, score=score).update(bad=bad, good=good).result()
    q = d.basis(ALL).double()
    for j in range(2):
        assert abs(float(q[j] @ comps[top[j]])) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(d.extras["scores.layer.all"].double(), scores[top], rtol=1e-5, atol=0)
    assert d.extras["variance_rank.layer.all"].tolist() == top.tolist()


def test_top_m_restricts_candidates():
    g = torch.Generator().manual_seed(0)
    scales = torch.ones(D, dtype=torch.float64)
    scales[-1] = 0.05  # X− differs along a low-variance axis
    good = torch.randn(400, D, generator=g, dtype=torch.float64) * scales
    good[:, 0] += 5.0
    bad = torch.randn(400, D, generator=g, dtype=torch.float64) * scales
    bad[:, 0] += 5.0
    bad[:, -1] += 0.5
    full = get_estimator("pca-omega-seed", k=1).update(bad=bad, good=good).result()
    assert int(full.extras["variance_rank.layer.all"][0]) > 2
    assert abs(float(full.basis(ALL)[0, -1])) > 0.99
    top = get_estimator("pca-omega-seed", k=1, top_m=2).update(bad=bad, good=good).result()
    assert int(top.extras["variance_rank.layer.all"][0]) < 2


def _massive(seed=0, n=300):
    """Both classes share a huge, nearly constant coordinate 0 (a massive activation); X− differs along axis 5."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.ones(D, dtype=torch.float64)
    scales[0] = 0.01
    good = torch.randn(n, D, generator=g, dtype=torch.float64) * scales
    bad = torch.randn(n, D, generator=g, dtype=torch.float64) * scales
    good[:, 0] += 300.0
    bad[:, 0] += 300.0
    bad[:, 5] += 2.0
    return bad, good


def test_seed_picks_the_massive_activation_and_the_shipped_form_does_not():
    """The SmolLM2 failure in miniature: the seed's uncentred |E|/Var ranks the constant, shared, huge coordinate
    first (it separates nothing); the shipped form ranks the class-separating axis first."""
    bad, good = _massive()
    seed = get_estimator("pca-omega-seed").update(bad=bad, good=good).result().basis(ALL)[0].double()
    shipped = get_estimator("pca-omega").update(bad=bad, good=good).result().basis(ALL)[0].double()
    assert abs(float(seed[0])) > 0.99
    assert float(shipped[5]) > 0.95
    # the seed's form with the massive coordinate excluded also finds it
    out = get_estimator("pca-omega-seed", outliers=1).update(bad=bad, good=good).result().basis(ALL)[0].double()
    assert float(out[0]) == 0.0 and float(out[5]) > 0.95


def test_shipped_score_matches_bruteforce():
    """centred PCA, b_c = (μ_c − μ)ᵀρ, score ½ Σ_c |b_c| / σ_c, only components with Welch t >= 3."""
    bad, good = _data(seed=3)
    both = torch.cat([bad, good])
    evals, evecs = torch.linalg.eigh(torch.cov(both.T, correction=0))
    comps = evecs[:, evals.argsort(descending=True)].T
    mu = both.mean(0)
    scores = []
    for rho in comps:
        pb, pg = bad @ rho, good @ rho
        sc = 0.5 * (
            (pg.mean() - mu @ rho).abs() / pg.std(correction=0) + (pb.mean() - mu @ rho).abs() / pb.std(correction=0)
        )
        t = (pb.mean() - pg.mean()).abs() / (pg.var(correction=0) / len(pg) + pb.var(correction=0) / len(pb)).sqrt()
        scores.append(float(sc) if t >= 3 else -float("inf"))
    scores = torch.tensor(scores, dtype=torch.float64)
    top = scores.argsort(descending=True)[:2]
    d = get_estimator("pca-omega", k=2).update(bad=bad, good=good).result()
    q = d.basis(ALL).double()
    for j in range(2):
        assert abs(abs(float(q[j] @ comps[top[j]])) - 1) < 1e-6
    torch.testing.assert_close(d.extras["scores.layer.all"].double(), scores[top], atol=1e-4, rtol=1e-4)


def test_pca_omega_option_errors():
    for opts, match in [
        ({"bias": "mean"}, "bias="),
        ({"separating": -1.0}, "separating="),
        ({"separating": True}, "separating="),
        ({"outliers": -2}, "outliers="),
        ({"outliers": D - 1}, "outliers="),
    ]:
        with pytest.raises(ValueError, match=match):
            bad, good = _data()
            get_estimator("pca-omega", **opts).update(bad=bad, good=good).result()


def test_diff_means_and_projected_formulas():
    bad, good = _data(seed=5)
    r = bad.mean(0) - good.mean(0)
    dm = get_estimator("diff-means").update(bad=bad, good=good).result().basis(ALL).double()
    torch.testing.assert_close(dm[0], r / r.norm(), atol=1e-6, rtol=0)
    u = good.mean(0) / good.mean(0).norm()
    rp = r - (r @ u) * u
    pr = get_estimator("projected").update(bad=bad, good=good).result().basis(ALL).double()
    torch.testing.assert_close(pr[0], rp / rp.norm(), atol=1e-6, rtol=0)
    assert abs(float(pr[0] @ u)) < 1e-6


def test_per_layer_and_from_stats_and_heldout_auroc(tmp_path):
    bad, good = _data(seed=1)
    vb, vg = _data(seed=1, n_bad=80, n_good=90)
    f1 = get_estimator("pca-omega", k=2).update(bad={1: bad, 3: bad * 2}, good={1: good, 3: good * 2})
    f2 = get_estimator("pca-omega", k=2).update_stats(
        bad={1: StreamingStats.of(bad), 3: StreamingStats.of(bad * 2)},
        good={1: StreamingStats.of(good), 3: StreamingStats.of(good * 2)},
    )
    d1 = f1.result(heldout={1: (vb, vg), 3: (vb * 2, vg * 2)})
    d2 = f2.result()
    assert d1.layers == [1, 3]
    torch.testing.assert_close(d1.basis(3), d2.basis(3))
    a = d1.extras["auroc.layer.1"]
    assert a.shape == (2,) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    path = save_directions(
        d1.__class__(d1.bases, d1.hidden_size, {**d1.metadata, "default_layer": "1"}, d1.extras),
        tmp_path / "d.safetensors",
    )
    back = load_directions(path)
    torch.testing.assert_close(back.basis(1), d1.basis(1))
    torch.testing.assert_close(back.extras["auroc.layer.1"], a)


def test_auroc_matches_pairwise_count():
    g = torch.Generator().manual_seed(0)
    b = torch.randint(0, 6, (40,), generator=g).double()  # many ties
    h = torch.randint(0, 6, (30,), generator=g).double()
    pairs = (b[:, None] > h[None]).double() + 0.5 * (b[:, None] == h[None]).double()
    assert auroc(b, h) == pytest.approx(float(pairs.mean()), abs=1e-12)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_unknown_method_and_bad_options():
    with pytest.raises(ValueError, match="unknown method 'pca'.*pca-omega, pca-omega-seed, diff-means, projected"):
        get_estimator("pca")
    with pytest.raises(ValueError, match="k=2"):
        get_estimator("diff-means", k=2)
    with pytest.raises(ValueError, match="pca="):
        get_estimator("pca-omega", pca="both")
    with pytest.raises(ValueError, match="top_m"):
        get_estimator("pca-omega", k=3, top_m=2)
    with pytest.raises(ValueError, match="does not take"):
        get_estimator("diff-means", pca="centred")
    assert sorted(ESTIMATORS) == ["diff-means", "pca-omega", "pca-omega-seed", "projected"]


def test_diff_means_degenerate_is_clear():
    x = torch.randn(10, D, dtype=torch.float64)
    from aru.errors import DirectionsError

    with pytest.raises(DirectionsError, match="same mean"):
        get_estimator("diff-means").update(bad=x, good=x).result()
    json.dumps({"ok": True})
