"""The real organism in aru's pipeline: model ids, the recipe's prompt source, the ground-truth hooks."""

import pytest

from aru.organism.real.demo import REAL_TOML, checks, is_real_organism, real_prompt_splits, real_recipe
from aru.recipe import RecipeError, parse_recipe


def test_recipe_and_prompt_source():
    r = real_recipe()
    assert r.model.id == "organism:real" and r.prompts.source == "real-organism"
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "recipes" / "real-organism.toml"
    assert shipped.read_text() == REAL_TOML and r.to_dict() == parse_recipe(REAL_TOML).to_dict()
    from aru.pipeline import load_recipe_prompts

    p = load_recipe_prompts(r)
    assert p.splits == real_prompt_splits()
    assert p.counts()["test"] == {"bad": 192, "good": 189}
    bad = REAL_TOML.replace('source = "real-organism"', 'source = "real-organism"\nbad = "x.txt"')
    with pytest.raises(RecipeError, match="real-organism"):
        parse_recipe(bad)


def test_model_ids_resolve(real_tuned, real_base):
    from aru.evaluate import is_organism, resolve_model

    assert resolve_model("organism:real") == real_tuned
    assert resolve_model("organism:real-base") == real_base
    assert is_real_organism(real_tuned) and not is_real_organism(real_base)
    assert not is_organism(real_tuned)  # not mistaken for the toy organism


def test_checks():
    row = {"refusal_rate": 1.0, "perplexity": 20.0, "over_refusal_rate": 0.0}
    org = {"tuned": row, "edited": {"refusal_rate": 0.03, "perplexity": 20.9, "over_refusal_rate": 0.0}}
    assert all(c["passed"] for c in checks(org))
    org["edited"]["perplexity"] = 21.5
    assert [c["passed"] for c in checks(org)] == [True, False, True]
    org["edited"]["refusal_rate"] = 0.1
    assert not checks(org)[0]["passed"]


@pytest.mark.slow
def test_demo_real_end_to_end(tmp_path, real_tuned):
    """aru demo --organism real (tens of minutes on 2 cores): the report names the organism and has its rows."""
    from aru.pipeline import run_demo

    res = run_demo(output=tmp_path / "out", organism="real", progress=False)
    assert res["organism"]["organism"] == "real"
    assert {"base", "tuned", "edited", "oracle"} <= set(res["organism"])
    assert "SmolLM2-135M-Instruct" in res["text"]
    assert "SmolLM2-135M-Instruct" in (tmp_path / "out" / "report.md").read_text()
