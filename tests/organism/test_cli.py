import json

import pytest
from click.testing import CliRunner

from aru.cli import main
from aru.organism import organism_prompts, shipped, write_prompt_files


def test_write_prompt_files(tmp_path):
    paths = write_prompt_files(tmp_path / "p")
    assert sorted(paths) == sorted(f"{k}_{s}" for k in ("bad", "good") for s in ("train", "val", "test"))
    for split in ("train", "val", "test"):
        bad, good = organism_prompts(split)
        assert paths[f"bad_{split}"].read_text().splitlines() == bad
        assert paths[f"good_{split}"].read_text().splitlines() == good
    with pytest.raises(FileExistsError, match="bad_train.txt already exists"):
        write_prompt_files(tmp_path / "p")


def test_cli_prompts(tmp_path):
    res = CliRunner().invoke(main, ["organism", "prompts", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "bad_test.txt" in res.output and (tmp_path / "out" / "good_val.txt").is_file()
    res = CliRunner().invoke(main, ["organism", "prompts", "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "already exists" in res.output


def test_cli_eval_json():
    res = CliRunner().invoke(main, ["organism", "eval", str(shipped("tuned")), "--json", "--no-oracle"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["metrics"]["refusal_rate"] >= 0.9
    assert out["metrics"]["kl_to_tuned"] == pytest.approx(0.0, abs=1e-6)
    assert out["ceilings"]["base_accuracy"] >= 0.98 and out["ceilings"]["oracle"] is None


def test_cli_eval_table_by_name():
    res = CliRunner().invoke(main, ["organism", "eval", "base", "--no-oracle"])
    assert res.exit_code == 0, res.output
    assert "refusal_rate" in res.output and "tuned_restricted_accuracy" in res.output


def test_cli_eval_bad_folder(tmp_path):
    res = CliRunner().invoke(main, ["organism", "eval", str(tmp_path)])
    assert res.exit_code == 1 and "no config.json" in res.output


def test_cli_train_refuses_nonempty_output(tmp_path):
    (tmp_path / "x").write_text("keep me")
    res = CliRunner().invoke(main, ["organism", "train", "-o", str(tmp_path)])
    assert res.exit_code == 1 and "not empty" in res.output
    assert (tmp_path / "x").read_text() == "keep me"
