"""aru.outputs itself: recognition of aru outputs, the lock, the final re-check, stale cleanup, SIGTERM."""

from __future__ import annotations

import json
import os
import signal

import pytest
from safety_kit import directions_file

from aru.outputs import (
    Output,
    OutputError,
    Terminated,
    check_inputs,
    clean_stale,
    kind_of,
    run_leftovers,
    sigterm_unwinds,
)


def test_kind_of_recognises_each_output_by_its_record(tmp_path):
    d = directions_file(tmp_path / "d.safetensors")
    assert kind_of(d) == "directions"
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    assert kind_of(tmp_path / "m.gguf") == "gguf"
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 8)
    assert kind_of(tmp_path / "x.safetensors") is None
    edit = tmp_path / "edit"
    edit.mkdir()
    (edit / "aru.json").write_text(json.dumps({"aru_provenance": 1, "files": {}}))
    assert kind_of(edit) == "edit"
    (edit / "aru.json").write_text(json.dumps({"aru_provenance": 1, "files": {}, "extra": {"recipe": "x"}}))
    assert kind_of(edit) == "run"
    org = tmp_path / "org"
    for s in ("base", "tuned"):
        (org / s).mkdir(parents=True)
        (org / s / "organism.json").write_text("{}")
    (org / "training.json").write_text("{}")
    assert kind_of(org) == "organism"
    (tmp_path / "plain").mkdir()
    assert kind_of(tmp_path / "plain") is None


def test_check_inputs_both_ways(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(OutputError, match="overlaps the input"):
        check_inputs(tmp_path / "m" / "o", [tmp_path / "m"])
    with pytest.raises(OutputError, match="the input lies inside the output"):
        check_inputs(tmp_path, [tmp_path / "m" / "d.safetensors"])
    check_inputs(tmp_path / "o", [tmp_path / "m", None])


def test_commit_checks_the_target_again(tmp_path):
    out = tmp_path / "out"
    with Output(out, "edit") as claim:
        (claim.staging / "aru.json").write_text("{}")
        out.mkdir()
        (out / "mine.txt").write_text("meanwhile")
        with pytest.raises(OutputError, match="not an aru output"):
            claim.commit()
    assert (out / "mine.txt").read_text() == "meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging and lock removed


def test_second_claim_is_refused_while_the_first_holds_the_lock(tmp_path):
    with Output(tmp_path / "out", "edit"):
        with pytest.raises(OutputError, match="another aru process is writing"):
            Output(tmp_path / "out", "edit")
    with Output(tmp_path / "out", "edit") as claim:  # released: free again
        claim.commit()
    assert (tmp_path / "out").is_dir()


def test_staging_names_are_unique_per_claim(tmp_path):
    a = Output(tmp_path / "a", "edit")
    b = Output(tmp_path / "b", "edit")
    try:
        assert a.staging != b.staging and str(os.getpid()) in a.staging.name
    finally:
        a.close()
        b.close()


def test_clean_stale_keeps_live_and_unrelated_entries(tmp_path):
    (tmp_path / f".out.aru-partial-{os.getpid()}-00ff").mkdir()
    (tmp_path / "out.aru-partial-1-00ff").mkdir()  # not hidden: not an aru staging name
    (tmp_path / ".out.aru-partial-notapid-00ff").mkdir()
    said = []
    assert clean_stale(tmp_path / "out", said.append) == [] and said == []


def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Terminated), sigterm_unwinds(), Output(out, "edit") as claim:
        (claim.staging / "big").write_bytes(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_run_leftovers_only_for_aru_outputs(tmp_path):
    (tmp_path / "report.md").write_text("not aru's")
    assert run_leftovers(tmp_path) == set()
    (tmp_path / "aru.json").write_text(json.dumps({"aru_provenance": 1, "files": {}, "extra": {"recipe": "x"}}))
    assert run_leftovers(tmp_path) == {"report.md"}
