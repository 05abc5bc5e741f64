"""``aru attack`` on the shipped organism: a report folder written atomically, bad input refused clearly."""

import json

from click.testing import CliRunner

from aru.cli import main

FAST = ["attack", "organism:tuned", "--base", "organism:base", "--reference", "organism:tuned", "--protocol", "relearn",
        "--schedule", "0,2", "--seeds", "1", "--lrs", "1e-3", "-q"]  # fmt: skip


def test_attack_writes_a_report(tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, [*FAST, "-o", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["kind"] == "aru-attack" and rep["organism"]
    assert set(rep["relearn"]["curves"]) == {"edited", "base", "original"}
    assert rep["relearn"]["curves"]["base"]["behaviour_rate"]["mean"][0] == 0.0
    assert rep["target"] >= 0.9
    assert "Relearning" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folder left
    again = CliRunner().invoke(main, [*FAST, "-o", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_non_aru_folder_is_refused_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, [*FAST, "-o", str(out), "--overwrite"])
    assert res.exit_code == 1 and "not an aru attack report" in res.output
    assert "Traceback" not in res.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_bad_input_names_the_value(tmp_path):
    r = CliRunner()
    res = r.invoke(main, [*FAST, "--schedule", "0,x", "-o", str(tmp_path / "a")])
    assert res.exit_code == 2 and "'0,x'" in res.output
    res = r.invoke(main, [*FAST, "--protocol", "erode", "-o", str(tmp_path / "b")])
    assert res.exit_code == 1 and "erode" in res.output and "erosion" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = r.invoke(main, [*FAST, "--base", str(empty), "-o", str(tmp_path / "c")])
    assert res.exit_code == 1 and "config.json" in res.output and "Traceback" not in res.output
    res = r.invoke(main, [*FAST, "-o", str(tmp_path / "d"), "--seeds", "0"])
    assert res.exit_code == 1 and "seeds=0" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_failed_run_leaves_no_output(tmp_path, monkeypatch):
    import aru.attack_report as AR

    def boom(*a, **k):
        raise ValueError("plot failed")

    monkeypatch.setattr(AR, "report_markdown", boom)
    res = CliRunner().invoke(main, [*FAST, "-o", str(tmp_path / "rep")])
    assert res.exit_code == 1 and "plot failed" in res.output
    assert not any(tmp_path.iterdir())
