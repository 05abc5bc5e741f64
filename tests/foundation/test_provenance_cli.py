"""aru.json provenance checks and the CLI group."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aru.cli import COMMANDS, main
from aru.errors import ProvenanceError
from aru.provenance import check_provenance, read_provenance, update_provenance, write_provenance


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")
    write_provenance(tmp_path, {"input": {"path": "x"}})
    return tmp_path


def test_check_provenance_passes_then_names_each_problem(folder):
    assert check_provenance(folder)["input"] == {"path": "x"}
    (folder / "model.safetensors").write_bytes(b"tampered")
    (folder / "config.json").unlink()
    (folder / "extra.bin").write_bytes(b"?")
    with pytest.raises(ProvenanceError) as err:
        check_provenance(folder)
    msg = str(err.value)
    assert (
        "model.safetensors changed" in msg and "missing file config.json" in msg and "unrecorded file extra.bin" in msg
    )


def test_update_keeps_hashes_and_readme_is_not_hashed(folder):
    update_provenance(folder, verify={"passed": True})
    (folder / "README.md").write_text("card")
    data = check_provenance(folder)
    assert data["extra"]["verify"] == {"passed": True}


def test_read_refuses_missing_and_malformed(tmp_path):
    with pytest.raises(ProvenanceError, match="not an aru output"):
        read_provenance(tmp_path)
    (tmp_path / "aru.json").write_text("{oops")
    with pytest.raises(ProvenanceError, match="not valid JSON"):
        read_provenance(tmp_path)
    (tmp_path / "aru.json").write_text(json.dumps({"aru_provenance": 99}))
    with pytest.raises(ProvenanceError, match="not an aru provenance file"):
        read_provenance(tmp_path)


def test_cli_lists_every_stage_and_has_a_version():
    runner = CliRunner()
    res = runner.invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in res.output, name
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "aru, version" in res.output
