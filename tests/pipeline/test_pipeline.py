"""The organism pipeline end to end: aru demo / aru run, the output folder, verification, failure modes."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from aru.cli import main
from aru.organism import shipped, write_prompt_files
from aru.provenance import check_provenance, read_provenance

SMALL = """
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
[eval]
max_new_tokens = 8
max_prompts = 40
batch_size = 64
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "organism-unlearned"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_demo_meets_the_targets(demo):
    out, res = demo
    org = res["organism"]
    assert all(c["passed"] for c in res["checks"]), res["checks"]
    assert org["tuned"]["refusal_rate"] >= 0.9 and org["edited"]["refusal_rate"] <= 0.05
    gain = org["edited"]["forbidden_accuracy"] - org["tuned"]["forbidden_accuracy"]
    assert gain >= 0.8 * (org["oracle"]["forbidden_accuracy"] - org["tuned"]["forbidden_accuracy"])
    assert abs(org["edited"]["allowed_accuracy"] - org["tuned"]["allowed_accuracy"]) <= 0.03
    assert org["edited"]["kl_to_tuned"] > 0
    assert res["output"] == str(out.resolve())


def test_demo_output_verifies_and_loads_in_plain_transformers(demo, organism):
    out, _ = demo
    res = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["passed"]
    check_provenance(out)  # every file, reports included, matches aru.json
    from transformers import AutoModelForCausalLM

    edited = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    tuned = organism[1]
    changed = [n for n, p in edited.named_parameters() if not torch.equal(p, tuned.get_parameter(n))]
    assert changed and all(("o_proj" in n or "down_proj" in n or "embed_tokens" in n) for n in changed)


def test_report_holds_the_candidate_table(demo):
    out, res = demo
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    cands = rep["selection"]["candidates"]
    assert len(cands) >= 8 and sum(c["chosen"] for c in cands) == 1
    assert "P(refusal token)" in md and md.count("| diff-means |") + md.count("| **diff-means** |") >= 4
    assert "oracle direction (ceiling)" in md
    extra = read_provenance(out)["extra"]
    assert {"verify", "evaluation", "selection", "recipe"} <= set(extra)
    assert extra["recipe"].startswith('name = "organism"')
    rows = extra["evaluation"]  # flat rows for the model card, the oracle as the ceiling
    assert [r["model"] for r in rows] == ["original", "edited", "oracle direction (ceiling)"]
    assert rows[1]["organism_refusal_rate"] == rep["organism"]["edited"]["refusal_rate"]
    assert all(not isinstance(v, (dict, list)) for r in rows for v in r.values())
    assert extra["verify"]["edited"] == str(out.resolve())
    assert extra["selection"]["method"] == rep["selection"]["chosen"]["method"]  # what the card reads
    assert extra["selection"]["chosen"] == rep["selection"]["chosen"]


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    return write_prompt_files(tmp_path_factory.mktemp("prompts"))


def _recipe(tmp_path, files, **repl) -> Path:
    text = SMALL.format(bad=files["bad_train"], good=files["good_train"])
    for k, v in repl.items():
        text = text.replace(k, v)
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_aru_run_with_prompt_files_json_and_push(tmp_path, prompt_files, monkeypatch):
    import aru.hub

    pushed = []

    def fake_push(folder, repo_id, **kw):
        check_provenance(folder)  # what the real push checks first
        pushed.append((Path(folder), repo_id, kw))
        return type("R", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(aru.hub, "push", fake_push)
    recipe = _recipe(tmp_path, prompt_files)
    recipe.write_text(recipe.read_text() + '[push]\nrepo_id = "me/organism-unlearned"\nprivate = true\n')
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert pushed == [(out.resolve(), "me/organism-unlearned", {"private": True})]
    assert rep["pushed"].endswith("me/organism-unlearned/commit/1")
    assert rep["prompts"]["train"] == {"bad": 120, "good": 120}
    edited = next(r for r in rep["evaluation"] if r["model"] == "edited")
    original = next(r for r in rep["evaluation"] if r["model"] == "original")
    assert original["behaviour_rate"] >= 0.9 and edited["behaviour_rate"] <= 0.05
    assert rep["verify"]["passed"] and rep["organism"]["edited"]["refusal_rate"] <= 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.toml"]  # no temp folders left
    # an existing output is refused before any work, and left alone
    before = (out / "aru.json").read_text()
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(out), "-q", "--no-push"])
    assert res.exit_code != 0 and "already exists" in res.output and "--overwrite" in res.output
    assert (out / "aru.json").read_text() == before


def test_a_failed_run_leaves_nothing_and_keeps_the_input(tmp_path, prompt_files, monkeypatch):
    import aru.verify
    from aru.provenance import hash_folder

    def broken(*_a, **_k):
        raise RuntimeError("simulated failure after the edit")

    monkeypatch.setattr(aru.verify, "verify_edit", broken)
    logs = tmp_path.parent / f"{tmp_path.name}-logs"
    monkeypatch.setenv("ARU_LOG_DIR", str(logs))
    before = hash_folder(shipped("tuned"))
    recipe = _recipe(tmp_path, prompt_files)
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(tmp_path / "out"), "-q"])
    # an unexpected exception is reported as a bug in aru, its traceback in a log file, not on screen
    assert res.exit_code == 1 and "this is a bug in aru" in res.output and "simulated failure" in res.output
    assert "Traceback" not in res.output and "simulated failure" in next(logs.glob("aru-bug-*.log")).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]
    assert hash_folder(shipped("tuned")) == before


def test_overwrite_never_touches_the_input_or_a_foreign_folder(tmp_path, prompt_files):
    from aru.provenance import hash_folder

    recipe = _recipe(tmp_path, prompt_files)
    before = hash_folder(shipped("tuned"))
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(shipped("tuned")), "--overwrite", "-q"])
    assert res.exit_code != 0 and "overlaps the input" in res.output
    assert hash_folder(shipped("tuned")) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(foreign), "--overwrite", "-q"])
    assert res.exit_code != 0 and "not an aru output" in res.output
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_run_check_and_bad_recipe(tmp_path, prompt_files):
    recipe = _recipe(tmp_path, prompt_files, **{"kl_budget = 0.5": "kl_budget = 0.5\nbudget = 1"})
    res = CliRunner().invoke(main, ["run", str(recipe), "--check"])
    assert res.exit_code != 0 and "unknown key 'budget' in [select]" in res.output
    organism_toml = Path(__file__).resolve().parents[2] / "recipes" / "organism.toml"
    res = CliRunner().invoke(main, ["run", str(organism_toml), "--check"])
    assert res.exit_code == 0 and "valid recipe" in res.output


def test_hub_model_and_hub_prompts_are_recorded(tmp_path, prompt_files, monkeypatch):
    """Real Hub code paths (snapshot_download, hf_hub_download), served from local files."""
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id, revision=None, **kw):
        calls.append(("model", repo_id, revision))
        return str(shipped("tuned"))

    def fake_file(repo_id, filename, repo_type=None, revision=None, **kw):
        calls.append(("file", repo_id, filename, repo_type))
        return str(prompt_files[Path(filename).stem])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_file)
    recipe = _recipe(tmp_path, {"bad_train": "hf://datasets/acme/prompts/bad_train.txt",
                                "good_train": "hf://datasets/acme/prompts/good_train.txt"},
                     **{'id = "organism:tuned"': 'id = "acme/organism-tuned"\nrevision = "v1"'})  # fmt: skip
    res = CliRunner().invoke(main, ["run", str(recipe), "-o", str(tmp_path / "out"), "-q", "--json"])
    assert res.exit_code == 0, res.output
    assert ("model", "acme/organism-tuned", "v1") in calls
    assert ("file", "acme/prompts", "bad_train.txt", "dataset") in calls
    record = read_provenance(tmp_path / "out")
    assert record["input"]["repo_id"] == "acme/organism-tuned" and record["input"]["revision"] == "v1"
