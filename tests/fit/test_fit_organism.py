"""Behavioural checks of the fit on the trained organism (real weights)."""

import json

import pytest
import torch

from aru.estimators import capture_sets, fit_directions, fit_from_captures


@pytest.fixture(scope="module")
def captures(organism, organism_sets):
    model, tok = organism
    bad, good = organism_sets["train"]
    vb, vg = organism_sets["val"]
    return capture_sets(model, tok, bad, good, layers=[1, 2, 3, 4], val_bad=vb, val_good=vg, batch_size=64)


def test_pca_omega_uncentred_separates_held_out(captures):
    res = fit_from_captures(captures, method="pca-omega-seed", k=1)
    rows = {r["layer"]: r for r in res.table}
    assert rows[4]["auroc"] > 0.95  # held-out entities and templates
    assert rows[4]["cos_diff_means"] > 0.9
    assert rows[4]["variance_rank"] == 0
    assert res.default_layer == max(res.table, key=lambda r: r["auroc"])["layer"]
    assert res.directions.default_layer == res.default_layer
    assert res.directions.metadata["heldout"] == "val"
    json.dumps(res.to_dict())


def test_centred_picks_low_variance_noise(captures):
    """The issue's prototype finding: centred PCA's top-ω components are low-variance and do not separate."""
    unc = {r["layer"]: r for r in fit_from_captures(captures, method="pca-omega-seed", pca="uncentred").table}
    cen = {r["layer"]: r for r in fit_from_captures(captures, method="pca-omega-seed", pca="centred").table}
    assert cen[4]["variance_rank"] > 32 and cen[4]["auroc"] < unc[4]["auroc"] - 0.2


def test_several_methods_and_k_from_one_capture(captures):
    for method, k in [("diff-means", 1), ("projected", 1), ("pca-omega", 3)]:
        res = fit_from_captures(captures, method=method, k=k)
        for ly in res.directions.layers:
            q = res.directions.basis(ly).double()
            assert q.shape[0] == k
            torch.testing.assert_close(q @ q.T, torch.eye(k, dtype=torch.float64), atol=1e-5, rtol=0)
        best = {r["layer"]: r for r in res.table}[4]
        assert best["auroc"] > 0.95
    dm = {r["layer"]: r for r in fit_from_captures(captures, method="diff-means").table}
    assert all(abs(r["cos_diff_means"] - 1) < 1e-6 for r in dm.values())


def test_fit_directions_with_holdout(organism, organism_sets):
    model, tok = organism
    bad, good = organism_sets["val"]
    res = fit_directions(model, tok, bad, good, method="diff-means", layers=[2, -1], batch_size=32)
    assert res.directions.layers == [2, 4]
    md = res.directions.metadata
    assert md["heldout"] == "holdout" and int(md["n_bad"]) == 256 and md["method"] == "diff-means"
    with pytest.raises(ValueError, match="unknown method"):
        fit_directions(model, tok, bad, good, method="nope")


def test_fitted_direction_removes_the_refusal(organism, captures):
    """Projecting the default-layer pca-omega (uncentred) direction out of every writer removes the refusal on
    held-out test questions; the centred variant's top-ω component does not."""
    from aru.model_edit import make_plan, projection_hooks
    from aru.organism.evaluate import forbidden_metrics

    model, tok = organism
    before = forbidden_metrics(model, tok)["refusal_rate"]
    rates = {}
    for pca in ("uncentred", "centred"):
        res = fit_from_captures(captures, method="pca-omega-seed", pca=pca)
        with projection_hooks(model, make_plan(res.directions, 4)):
            rates[pca] = forbidden_metrics(model, tok)
    assert before > 0.9
    assert rates["uncentred"]["refusal_rate"] < 0.1 and rates["uncentred"]["forbidden_accuracy"] > 0.7
    assert rates["centred"]["refusal_rate"] > 0.9


def test_fit_unchanged_by_batch_size_and_order(organism, organism_sets):
    model, tok = organism
    bad, good = (s[::5] for s in organism_sets["train"])
    vb, vg = (s[::4] for s in organism_sets["val"])
    results = []
    for bs, rev in ((64, False), (7, True)):
        b, g = (bad[::-1], good[::-1]) if rev else (bad, good)
        caps = capture_sets(model, tok, b, g, layers=[3, 4], val_bad=vb, val_good=vg, batch_size=bs)
        results.append(fit_from_captures(caps, k=2))
    for ly in (3, 4):
        torch.testing.assert_close(results[0].directions.basis(ly), results[1].directions.basis(ly), atol=1e-5, rtol=0)
    assert [r["auroc"] for r in results[0].table] == pytest.approx([r["auroc"] for r in results[1].table], abs=1e-6)
