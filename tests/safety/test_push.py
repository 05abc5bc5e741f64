"""Forged and tampered folders against ``aru push`` (and the fake Hub on 127.0.0.1): the hashes can be rewritten,
the model cannot. Each refusal happens before any network call and leaves the folder as it was."""

from __future__ import annotations

import json
import shutil

import huggingface_hub
import pytest
import torch
from safety_kit import aru, directions_file, fake_hub, listing, refused, rewrite_tensor, tiny_llama, tree_sha

from aru.checkpoint import edit_checkpoint
from aru.hub import push
from aru.provenance import check_provenance, read_provenance, record_files, rewrite_provenance, update_provenance
from aru.pushcheck import ForgedOutputError

O_PROJ = "model.layers.1.self_attn.o_proj.weight"


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with fake_hub() as h:
        yield h


@pytest.fixture
def edited(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    model, dirs = ckpt
    edit_checkpoint(model, dirs, tmp_path / "out", progress=False)
    return tmp_path / "out"


def _push(out, hub, **kw):
    return push(out, "you/x", token="t", endpoint=hub.endpoint, **kw)


def _refused(out, hub, match, **kw):
    before = listing(out), tree_sha(out)
    with pytest.raises(ForgedOutputError if kw.pop("forged", True) else Exception, match=match):
        _push(out, hub, **kw)
    assert hub.calls == [] and hub.repos == {}, "the Hub was contacted"
    assert (listing(out), tree_sha(out)) == before


def test_push_of_a_real_edit_is_checked_and_says_so(edited, hub):
    res = _push(edited, hub)
    assert "Checked by `aru push`: all" in res.card and "re-derived from" in res.card
    assert "WARNING" not in res.card
    tree = hub.repos["you/x"]["files"]["main"]
    assert set(tree) == {p for p, _ in res.files}


def test_push_refuses_the_base_shard_swapped_in(ckpt, edited, hub):
    """Issue 15 #4: the original weights with their sha256 written into aru.json passed (failed before)."""
    model, _ = ckpt
    shutil.copy(model / "model.safetensors", edited / "model.safetensors")
    record_files(edited, ["model.safetensors"])
    check_provenance(edited)  # the hashes hold: only the model check can tell
    _refused(edited, hub, f"is not the edit.*{O_PROJ} is not the fold")
    r = aru("push", edited, "you/x", "--dry-run")
    refused(r, "is not the fold of the base's tensor", str(edited))


@pytest.mark.parametrize(
    "name, fn, match",
    [
        (O_PROJ, lambda t: t + 1e-3, "o_proj.weight is not the fold"),
        (O_PROJ, lambda t: t * float("nan"), "o_proj.weight is not the fold"),
        ("model.layers.0.input_layernorm.weight", lambda t: t * 1.01, "input_layernorm.weight differs from the base"),
        ("model.layers.0.self_attn.q_proj.weight", lambda t: -t, "q_proj.weight differs from the base"),
        ("model.embed_tokens.weight", lambda t: t.to(torch.float16).to(torch.float32), "embed_tokens.weight is not"),
        ("lm_head.weight", lambda t: t[:, :16].contiguous(), "lm_head.weight is torch.float32"),
    ],
)
def test_push_refuses_a_tampered_tensor(edited, hub, name, fn, match):
    rewrite_tensor(edited / "model.safetensors", name, fn)
    record_files(edited, ["model.safetensors"])
    _refused(edited, hub, match)


def test_push_refuses_an_added_tensor(edited, hub):
    rewrite_tensor(edited / "model.safetensors", "model.norm.weight", lambda t: t)
    from safetensors.torch import load_file, save_file

    t = load_file(str(edited / "model.safetensors"))
    t["backdoor.weight"] = torch.ones(4)
    save_file(t, str(edited / "model.safetensors"), metadata={"format": "pt"})
    record_files(edited, ["model.safetensors"])
    _refused(edited, hub, r"tensor names differ.*backdoor.weight")


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("config.json", None, r"config.json differs from the base's in \['rms_norm_eps'\]"),
        ("generation_config.json", b'{"temperature": 9}', "generation_config.json differs from the base"),
        ("modeling_evil.py", b"import os\n", "modeling_evil.py is not in the base model"),
        (".hidden/payload.bin", b"\x00", r"\.hidden/payload.bin is not in the base model"),
    ],
)
def test_push_refuses_a_changed_or_added_file_with_its_hash_rewritten(edited, hub, name, content, match):
    path = edited / name
    if content is None:
        cfg = json.loads(path.read_text())
        cfg["rms_norm_eps"] = 0.5
        content = json.dumps(cfg).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    record_files(edited, [name])
    _refused(edited, hub, match)


def test_push_refuses_an_unrecorded_file_in_a_hidden_folder_before_creating_the_repo(edited, hub):
    """Issue 15 #4: a file under a hidden folder was skipped by the check but not by the upload, and the Hub
    refused it after the repo was created (failed before: the repo existed)."""
    (edited / ".cache").mkdir()
    (edited / ".cache" / "x.txt").write_text("hidden")
    from aru.errors import ProvenanceError

    with pytest.raises(ProvenanceError, match=r"unrecorded file \.cache/x.txt"):
        _push(edited, hub)
    assert hub.calls == [] and hub.repos == {}


def test_push_refuses_a_symlink_leaving_the_folder(edited, hub, tmp_path):
    """Issue 15 #4: a link to a file outside, with its hash written in, was uploaded (failed before)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("ssh key")
    (edited / "notes.txt").symlink_to(secret)
    record_files(edited, ["notes.txt"])
    from aru.errors import ProvenanceError

    with pytest.raises(ProvenanceError, match=r"notes.txt.*symbolic link.*outside the folder"):
        _push(edited, hub)
    assert hub.calls == [] and hub.repos == {}


@pytest.mark.parametrize("vcs", [".git", ".hg", ".svn"])
def test_push_of_a_folder_under_version_control(edited, hub, vcs):
    """Issue 15 #4: every .git/* file counted as unrecorded (failed before); VCS folders are neither checked
    nor uploaded."""
    (edited / vcs / "objects").mkdir(parents=True)
    (edited / vcs / "HEAD").write_text("ref: refs/heads/main\n")
    (edited / vcs / "objects" / "ab").write_bytes(b"\x01")
    res = _push(edited, hub)
    tree = hub.repos["you/x"]["files"]["main"]
    assert not [n for n in tree if n.startswith(vcs)] and not [p for p, _ in res.files if p.startswith(vcs)]


def test_card_marks_recorded_numbers_as_not_checked(edited, hub):
    """Issue 15 #4: hand-edited verify/evaluation numbers went onto the card unchecked (failed before)."""
    update_provenance(
        edited,
        verify={"rel_dlogit": 1e-9, "passed": True},
        evaluation=[{"model": "edited", "refusal_rate": 0.0}],
    )
    res = _push(edited, hub)
    assert res.card.count("Recorded, not checked") == 2
    ev = res.card.index("## Evaluation")
    assert res.card.index("Recorded, not checked", ev) < res.card.index("| edited | 0 |")


def test_push_needs_the_base_or_says_how(ckpt, edited, hub, tmp_path):
    model, dirs = ckpt
    moved = tmp_path / "moved-model"
    model.rename(moved)
    _refused(edited, hub, "--base PATH", forged=False)
    r = aru("push", edited, "you/x", "--dry-run")
    refused(r, "is not available", "--no-base-check", str(model))
    res = _push(edited, hub, base=moved)
    assert f"re-derived from `{moved}`" in res.card


def test_push_with_a_different_base_is_refused(edited, hub, tmp_path):
    tiny_llama(tmp_path / "other", seed=5)
    _refused(edited, hub, "is not the model that was edited.*model.safetensors", base=tmp_path / "other")


def test_push_with_other_directions_is_refused(ckpt, edited, hub, tmp_path):
    other = directions_file(tmp_path / "other.safetensors", seed=9)
    _refused(edited, hub, "is not the one recorded", directions=other)
    dirs = ckpt[1]
    dirs.unlink()
    _refused(edited, hub, "--directions FILE", forged=False)


def test_no_base_check_puts_a_loud_warning_on_the_card(ckpt, edited, hub):
    model, _ = ckpt
    shutil.copy(model / "model.safetensors", edited / "model.safetensors")
    record_files(edited, ["model.safetensors"])
    r = aru("push", edited, "you/x", "--dry-run", "--no-base-check")
    assert r.exit_code == 0, r.output
    assert "WARNING: --no-base-check" in r.output and "**WARNING: unchecked.**" in r.output
    res = _push(edited, hub, base_check=False)
    card = hub.repos["you/x"]["files"]["main"]["README.md"].decode()
    assert res.card == card and card.index("WARNING: unchecked") < card.index("## What was removed")


@pytest.mark.parametrize(
    "kw",
    [
        {"layers": "1-2"},
        {"strength": 0.5},
        {"k": 1},
        {"dtype": "float64"},
        {"layers": "0"},  # edits the embeddings: the tied head is untied
    ],
)
def test_push_rederives_every_kind_of_edit(tmp_path, hub, kw):
    """No false refusals: each setting the editor records is re-derived exactly."""
    tiny_llama(tmp_path / "model", tie_word_embeddings=True)
    dirs = directions_file(tmp_path / "d.safetensors", k=2)
    edit_checkpoint(tmp_path / "model", dirs, tmp_path / "out", progress=False, **kw)
    res = _push(tmp_path / "out", hub)
    assert "Checked by `aru push`" in res.card


def test_push_rederives_a_per_layer_edit(tmp_path, hub):
    from aru.directions import Directions, orthonormalize, save_directions

    tiny_llama(tmp_path / "model")
    g = torch.Generator().manual_seed(0)
    bases = {i: orthonormalize(torch.randn(1, 32, generator=g)) for i in range(5)}
    dirs = save_directions(Directions(bases, 32, {"method": "test"}), tmp_path / "d.safetensors")
    edit_checkpoint(tmp_path / "model", dirs, tmp_path / "out", progress=False, per_layer=True)
    assert "Checked by `aru push`" in _push(tmp_path / "out", hub).card


def test_editing_a_run_output_does_not_carry_its_reports(edited, tmp_path):
    """Issue 15 #4: editing an aru run output copied its report.md/report.json into the new output, hashed, so
    push would publish stale reports (failed before)."""
    for name in ("report.md", "report.json"):
        (edited / name).write_text("the old run's numbers")
    record_files(edited, ["report.md", "report.json"])
    update_provenance(edited, recipe="[model]\nid = 'x'\n")
    dirs = tmp_path / "dirs.safetensors"
    res = aru("edit", edited, "-d", dirs, "-o", tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "again" / "report.md").exists() and not (tmp_path / "again" / "report.json").exists()
    assert "report.md" not in read_provenance(tmp_path / "again")["files"]


def test_forged_record_pointing_to_other_settings(edited, hub):
    data = read_provenance(edited)
    data["settings"]["strength"] = 0.5  # the weights were folded with 1.0
    rewrite_provenance(edited, data)
    _refused(edited, hub, "is not the fold")
