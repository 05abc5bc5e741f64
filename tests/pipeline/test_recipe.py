import dataclasses
import re
from pathlib import Path

import pytest

from aru import recipe as R

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").glob("*.toml"))
MINIMAL = '[model]\nid = "organism:tuned"\n[prompts]\nsource = "organism"\n'


def test_recipes_are_shipped_for_every_family():
    names = {p.stem for p in SHIPPED}
    assert "organism" in names
    for family in ("llama-3", "qwen2.5", "qwen3", "gemma-2", "gemma-3", "mistral", "phi-3"):
        assert any(n.startswith(family) for n in names), family


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_parses_and_validates(path):
    rec = R.load_recipe(path)
    assert rec.model.id and rec.text == path.read_text()
    if rec.prompts.source == "files":
        assert rec.prompts.bad.startswith("hf://datasets/") and rec.prompts.good.startswith("hf://datasets/")
        assert "/" in rec.model.id  # a Hub id
    from aru.select import known_methods

    assert set(rec.fit.methods) <= set(known_methods())


def test_the_organism_recipe_file_is_the_built_in_one():
    assert (ROOT / "recipes" / "organism.toml").read_text() == R.ORGANISM_TOML
    assert R.organism_recipe().to_dict() == R.parse_recipe(R.ORGANISM_TOML).to_dict()


def test_minimal_recipe_gets_the_defaults():
    rec = R.parse_recipe(MINIMAL)
    d = R.defaults()
    for section in ("fit", "select", "edit", "eval"):
        assert dataclasses.asdict(getattr(rec, section)) == d[section]
    assert rec.push is None


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("[fit]\nlayer = 3\n", r"unknown key 'layer' in \[fit\]"),
        ("[selct]\nconfirm = 2\n", r"unknown section or key 'selct'"),
        ("[select]\nkl_budget = 'high'\n", r"select.kl_budget = 'high' must be a number"),
        ("[select]\nstrengths = [3.0]\n", r"strengths holds 3.0"),
        ("[select]\nedit_layers = ['middle']\n", r"edit_layers holds 'middle'"),
        ("[select]\nkl_budget = 0\n", r"kl_budget = 0.0 must be > 0"),
        ("[fit]\nmethods = ['pca']\n", r"fit.methods\[\] = 'pca'; choose one of .*pca-omega"),
        ("[fit]\nk = [0]\n", r"fit.k = \[0\]"),
        ("[fit]\nposition = 'first'\n", r"fit.position = 'first'"),
        ("[fit]\nbatch_size = true\n", r"fit.batch_size = True must be an integer"),
        ("[eval]\nextra_markers = ['re:(']\n", r"not a valid regular expression"),
        ("[eval]\nmax_new_tokens = 0\n", r"max_new_tokens"),
        ("[edit]\npostnorm = 'sideways'\n", r"edit.postnorm = 'sideways'"),
        ("[push]\nprivate = true\n", r"\[push\] needs repo_id"),
        ("[model]\nrevision = 'x'\n", r"not valid TOML"),  # a second [model] table
        ("name = 3\n", r"name = 3 must be a string"),
    ],
)
def test_bad_recipes_name_the_key(extra, match):
    with pytest.raises(R.RecipeError, match=match):
        text = extra + MINIMAL if extra.startswith("name") else MINIMAL + extra
        R.parse_recipe(text)


def test_missing_model_and_prompt_files():
    with pytest.raises(R.RecipeError, match=r"no \[model\] section"):
        R.parse_recipe("[fit]\nk = 1\n")
    with pytest.raises(R.RecipeError, match="model.id is required"):
        R.parse_recipe("[model]\ndtype = 'float32'\n")
    with pytest.raises(R.RecipeError, match="prompts.bad and prompts.good are required"):
        R.parse_recipe("[model]\nid = 'org/name'\n")
    with pytest.raises(R.RecipeError, match="fractions"):
        R.parse_recipe("[model]\nid = 'a/b'\n[prompts]\nbad='b.txt'\ngood='g.txt'\nfractions=[0.5, 0.5, 0.5]\n")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        R.load_recipe("no-such-recipe.toml")


def test_scalars_stand_for_lists_and_paths_are_relative_to_the_recipe(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[model]\nid = 'a/b'\n[prompts]\nbad = 'bad.txt'\ngood = 'hf://datasets/o/n/g.csv'\n[fit]\nk = 2\n")
    rec = R.load_recipe(p)
    assert rec.fit.k == (2,)
    assert rec.path(rec.prompts.bad) == str(tmp_path / "bad.txt")
    assert rec.path(rec.prompts.good) == "hf://datasets/o/n/g.csv"


def _documented_defaults() -> dict[str, str]:
    """`| section.key | default |` rows of the recipe reference table in docs/pipeline.md (its one copy)."""
    text = (ROOT / "docs" / "pipeline.md").read_text()
    assert "<!-- recipe-defaults -->" in text, "no recipe-defaults table in docs/pipeline.md"
    block = text.split("<!-- recipe-defaults -->")[1].split("<!-- /recipe-defaults -->")[0]
    return {m[1]: m[2] for m in re.finditer(r"^\| `([a-z_]+\.[a-z_]+)` \| `([^`]*)` \|", block, re.M)}


def test_documented_defaults_match_the_code():
    documented = _documented_defaults()
    code = {f"{s}.{k}": R.format_default(v) for s, keys in R.defaults().items() for k, v in keys.items()}
    assert documented == code
