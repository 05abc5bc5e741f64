import random
import warnings

import pytest
import torch

from aru import select as S
from aru.errors import AruWarning
from aru.organism import organism_prompts


def test_pareto_front_property():
    rng = random.Random(0)
    pts = [(rng.random(), rng.random()) for _ in range(60)] + [(0.5, 0.5), (0.5, 0.5)]
    front = S.pareto_front(pts)
    on = [p for p, f in zip(pts, front, strict=True) if f]
    assert on
    for p, f in zip(pts, front, strict=True):
        dominators = [q for q in pts if q[0] <= p[0] and q[1] <= p[1] and q != p]
        assert f == (not dominators)
    assert S.pareto_front([(0.5, 0.5), (0.5, 0.5)]) == [True, True]  # equal points do not dominate each other


def test_refusal_tokens_exclude_ordinary_openings():
    # "I cannot" (40) and "Sorry" (7) open refusals; "I'd be happy" (40) also opens ordinary answers
    assert S.refusal_token_set([[40, 1], [7, 2], [40, 3]], [[40, 9], [12]]) == [7]
    assert S.refusal_token_set([[40, 1]], [[40, 9]]) == [40]  # nothing left: keep them all
    assert S.refusal_token_set([[5], [3], []], []) == [3, 5]


def test_answer_agreement():
    assert S.answer_agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert S.answer_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [7, 6]]) == pytest.approx((0.5 + 0.0) / 2)
    assert S.answer_agreement([[1, 2]], [[1, 2, 3]]) == 1.0


def test_edit_layer_ranges():
    assert S.edit_layers("all", 2, 4) == "all"
    assert S.edit_layers("from_source", 2, 4) == "2-3"
    assert S.edit_layers("from_source", 4, 4) is None  # the last layer's output: nothing reads it
    assert S.edit_layers("to_source", 2, 4) == "0-1"
    assert S.edit_layers("to_source", 0, 4) is None
    assert S.edit_layers("1-2", 3, 4) == "1-2"


@pytest.fixture(scope="module")
def fits(organism):
    from aru.estimators import capture_sets, fit_from_captures

    _, tuned, tok = organism
    tb, tg = organism_prompts("train")
    vb, vg = organism_prompts("val")
    caps = capture_sets(tuned, tok, tb[::4], tg[::4], layers=[2, 3, 4], val_bad=vb[:40], val_good=vg[:40],
                        batch_size=256)  # fmt: skip
    return {
        "diff-means": fit_from_captures(caps, method="diff-means", k=1).directions,
        "pca-omega": fit_from_captures(caps, method="pca-omega", k=2).directions,
    }


def test_candidate_grid_skips_impossible_points(fits):
    grid = S.candidate_grid(fits, ks=[1, 2], strengths=[1.0, 0.5], edits=["all", "from_source"], num_layers=4)
    assert all(not (c.method == "diff-means" and c.k == 2) for c in grid)  # diff-means has one direction
    assert all(not (c.layer == 4 and c.edit == "from_source") for c in grid)
    assert len(grid) == len(set(grid))
    # diff-means: 3 layers x 2 strengths x (all + from_source except at 4) = 10; pca-omega: 2 k x 10 = 20
    assert len(grid) == 30


def test_select_on_the_organism_is_deterministic_and_removes_the_refusal(organism, fits):
    _, tuned, tok = organism
    vb, vg = organism_prompts("val")
    kw = dict(ks=[1, 2], edits=["all", "from_source"], kl_budget=0.3, confirm=2, max_prompts=48, max_new_tokens=8,
              seed=3, progress=False)  # fmt: skip
    a = S.select(tuned, tok, fits, vb, vg, **kw)
    b = S.select(tuned, tok, fits, vb, vg, **kw)
    assert a.rows == b.rows and a.chosen == b.chosen
    row = a.chosen_row
    assert row["confirmed"] and row["within_budget"] and row["kl"] <= 0.3
    assert a.baseline["behaviour_rate"] >= 0.9
    assert row["behaviour_rate"] <= 0.05  # the chosen edit really stops the refusal (generations, with hooks)
    confirmed = [r for r in a.rows if r["confirmed"]]
    assert all(0 <= r["agreement"] <= 1 for r in confirmed)
    best = min((r["behaviour_rate"], -r["agreement"], r["kl"]) for r in confirmed)
    assert (row["behaviour_rate"], -row["agreement"], row["kl"]) == best
    assert sum(r["confirmed"] for r in a.rows) == 2
    assert "i" in [t.strip() for t in a.refusal_tokens]
    # the hooks are gone: the model refuses again
    from aru.evaluate import behaviour_rate

    assert behaviour_rate(tuned, tok, vb[:20], max_new_tokens=8, progress=False)["rate"] >= 0.9
    md = a.markdown()
    assert md.count("\n") == len(a.rows) + 2  # header, rule, original row, one row per candidate
    assert "**" + row["method"] + "**" in md


def test_a_budget_nothing_meets_is_flagged(organism, fits, tmp_path):
    _, tuned, tok = organism
    vb, vg = organism_prompts("val")
    with pytest.warns(AruWarning, match="kl_budget"):
        sel = S.select(tuned, tok, {"diff-means": fits["diff-means"]}, vb, vg, kl_budget=1e-9, confirm=1,
                       max_prompts=16, max_new_tokens=6, progress=False)  # fmt: skip
    assert not sel.within_budget and sel.chosen_row["kl"] == min(r["kl"] for r in sel.rows)
    paths = sel.save(tmp_path)
    names = {p.name for p in paths}
    assert {"selection.json", "selection.md"} <= names
    try:
        import matplotlib  # noqa: F401

        assert "selection.png" in names
    except ImportError:
        assert "selection.png" not in names


def test_a_model_that_does_not_refuse_is_an_error(organism, fits):
    base, _, tok = organism
    vb, vg = organism_prompts("val")
    from aru.errors import AruError

    with warnings.catch_warnings(), pytest.raises(AruError, match="shows no refusal"):
        S.select(base, tok, fits, vb, vg, max_prompts=16, max_new_tokens=6, progress=False)
    assert torch.is_grad_enabled()
