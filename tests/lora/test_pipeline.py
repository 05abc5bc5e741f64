"""aru run with [edit] format = "peft": the organism pipeline writes an adapter, verifies it and evaluates
base + adapter (the refusal rate measured through the adapter; the organism's ground-truth table is left to
tests/pipeline, it costs a minute)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aru.cli import main
from aru.hub import build_model_card
from aru.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from aru.organism import write_prompt_files
from aru.provenance import check_provenance
from aru.recipe import RecipeError, load_recipe

RECIPE = """
[model]
id = "organism:tuned"
[prompts]
source = "files"
bad = "{bad}"
good = "{good}"
fractions = [0.5, 0.25, 0.25]
max_prompts = 240
[fit]
methods = ["diff-means"]
layers = [3, 4]
k = [1]
batch_size = 128
[select]
confirm = 1
max_prompts = 32
max_new_tokens = 8
kl_budget = 0.5
[edit]
format = "peft"
[eval]
max_new_tokens = 8
max_prompts = 40
batch_size = 64
organism = false
"""


def test_run_writes_a_verified_adapter(tmp_path):
    files = write_prompt_files(tmp_path / "prompts")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(bad=files["bad_train"], good=files["good_train"]))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert (out / ADAPTER_CONFIG).is_file() and (out / ADAPTER_WEIGHTS).is_file()
    assert not (out / "model.safetensors").exists()
    assert rep["edit"]["format"] == "peft" and rep["edit"]["bytes_written"] < 200_000
    assert rep["verify"]["passed"] and rep["verify"]["merged_rel_dlogit"] < 1e-5
    edited = next(r for r in rep["evaluation"] if r["model"] == "edited")
    original = next(r for r in rep["evaluation"] if r["model"] == "original")
    assert original["behaviour_rate"] >= 0.9 and edited["behaviour_rate"] <= 0.05
    check_provenance(out)
    card = str(build_model_card(out))
    assert "library_name: peft" in card and "LoRA adapter" in card


def test_recipe_rejects_unknown_format(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[model]\nid = 'organism:tuned'\n[prompts]\nsource = 'organism'\n[edit]\nformat = 'onnx'\n")
    with pytest.raises(RecipeError, match="edit.format"):
        load_recipe(p)
