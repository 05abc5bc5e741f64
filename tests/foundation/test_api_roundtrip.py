"""The Python API in five lines: fit -> edit (in-memory directions) -> verify with no arguments -> evaluate."""

import json

import aru
from aru.organism import load_shipped, organism_prompts, shipped
from aru.provenance import DIRECTIONS_FILE, file_sha256


def test_edit_from_in_memory_directions_then_verify_with_no_arguments(tmp_path):
    _, model, tok = load_shipped()
    bad, good = organism_prompts("train")
    fit = aru.fit_directions(model, tok, bad[:48], good[:48], method="diff-means", layers=[3], progress=False)
    out = tmp_path / "edited"
    aru.edit_checkpoint(shipped("tuned"), fit.directions, out, progress=False)

    record = json.loads((out / "aru.json").read_text())
    assert record["directions"]["path"] == DIRECTIONS_FILE  # stored inside the output, so the folder is whole
    assert record["directions"]["sha256"] == file_sha256(out / DIRECTIONS_FILE)
    assert record["files"][DIRECTIONS_FILE] == record["directions"]["sha256"]
    result = aru.verify_edit(out)  # no base, no directions: both from aru.json
    assert result.passed, result


def test_edit_from_a_file_stores_a_byte_copy(tmp_path):
    _, model, tok = load_shipped()
    bad, good = organism_prompts("train")
    fit = aru.fit_directions(model, tok, bad[:32], good[:32], method="diff-means", layers=[2], progress=False)
    dpath = aru.save_directions(fit.directions, tmp_path / "d.safetensors")
    out = tmp_path / "edited"
    aru.edit_checkpoint(shipped("tuned"), dpath, out, progress=False)
    record = json.loads((out / "aru.json").read_text())
    assert (out / DIRECTIONS_FILE).read_bytes() == dpath.read_bytes()
    assert record["directions"]["source"] == str(dpath.resolve())
    dpath.unlink()  # the output does not depend on the user's file any more
    assert aru.verify_edit(out).passed
