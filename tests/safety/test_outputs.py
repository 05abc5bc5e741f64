"""Outputs that overlap the input, are not aru's, are files, links, read-only, or appear during a run.

Every case asserts the exit code, a message naming the value, no partial output and the input's sha256 unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safety_kit import aru, directions_file, listing, refused, tree_sha

from aru.provenance import check_provenance, record_files, update_provenance


def _edit(model, dirs, out, *extra):
    return aru("edit", model, "-d", dirs, "-o", out, *extra)


def _edited(ckpt, out: Path) -> Path:
    model, dirs = ckpt
    res = _edit(model, dirs, out)
    assert res.exit_code == 0, res.output
    return out


def _unchanged(before: dict, *paths):
    for p in paths:
        assert tree_sha(p) == before[str(p)], f"{p} changed"


def _snapshot(*paths) -> dict:
    return {str(p): tree_sha(p) for p in paths}


# ------------------------------------------------------------------------------------------------ aru edit


@pytest.mark.parametrize("where", ["same", "inside", "inside-deep"])
def test_edit_output_is_or_inside_the_input(ckpt, where):
    model, dirs = ckpt
    out = {"same": model, "inside": model / "edited", "inside-deep": model / "a" / "b"}[where]
    before, names = _snapshot(model, dirs), listing(model.parent)
    refused(_edit(model, dirs, out, "--force"), "overlaps the input", str(model))
    _unchanged(before, model, dirs)
    assert listing(model.parent) == names


def test_edit_output_contains_the_input(ckpt):
    model, dirs = ckpt
    before, names = _snapshot(model, dirs), listing(model.parent)
    refused(_edit(model, dirs, model.parent, "--force"), "overlaps the input", str(model.parent))
    _unchanged(before, model, dirs)
    assert listing(model.parent) == names


def test_edit_output_through_a_symlink_into_the_input(ckpt, tmp_path):
    model, dirs = ckpt
    (tmp_path / "link").symlink_to(model)
    before = _snapshot(model, dirs)
    refused(_edit(model, dirs, tmp_path / "link" / "edited"), "overlaps the input", str(model))
    _unchanged(before, model, dirs)


@pytest.mark.parametrize("cwd", [False, True])
def test_edit_force_never_deletes_a_foreign_folder(ckpt, tmp_path, monkeypatch, cwd):
    """Issue 15 #2: ``-o ~/projects --force`` and ``-o . --force`` wiped the user's files (failed before)."""
    model, dirs = ckpt
    projects = tmp_path / "projects"
    (projects / "src").mkdir(parents=True)
    (projects / "src" / "main.py").write_text("print('mine')\n")
    (projects / "notes.txt").write_text("keep me")
    if cwd:
        monkeypatch.chdir(projects)
    before = _snapshot(model, dirs, projects)
    res = _edit(model, dirs, "." if cwd else projects, "--force")
    refused(res, "not an aru output", str(projects), "--force")
    _unchanged(before, model, dirs, projects)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirs.safetensors", "model", "projects"]


def test_edit_force_refuses_directions_inside_the_output(ckpt, tmp_path):
    """Issue 15 #2: ``-d OUT/aru/directions.safetensors -o OUT --force`` deleted the directions in use."""
    model, dirs = ckpt
    out = _edited(ckpt, tmp_path / "out")
    (out / "aru").mkdir()
    shutil.copy(dirs, out / "aru" / "directions.safetensors")
    record_files(out, ["aru/directions.safetensors"])
    check_provenance(out)
    before = _snapshot(model, out)
    res = _edit(model, out / "aru" / "directions.safetensors", out, "--force")
    refused(res, "the input lies inside the output", str(out / "aru" / "directions.safetensors"))
    _unchanged(before, model, out)


def test_edit_force_replaces_an_earlier_edit(ckpt, tmp_path):
    model, dirs = ckpt
    out = _edited(ckpt, tmp_path / "out")
    first = json.loads((out / "aru.json").read_text())["created"]
    refused(_edit(model, dirs, out), "already exists", "--force", str(out))
    res = _edit(model, dirs, out, "--force", "--strength", "0.5")
    assert res.exit_code == 0, res.output
    data = check_provenance(out)
    assert data["settings"]["strength"] == 0.5 and data["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirs.safetensors", "model", "out"]


def test_edit_force_refuses_an_aru_output_holding_user_files(ckpt, tmp_path):
    model, dirs = ckpt
    out = _edited(ckpt, tmp_path / "out")
    (out / "my-notes.md").write_text("mine")
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = _snapshot(model, out)
    refused(_edit(model, dirs, out, "--force"), "holds files aru did not write", ".git/HEAD", "my-notes.md")
    _unchanged(before, model, out)


def test_edit_force_refuses_an_aru_output_of_another_kind(ckpt, tmp_path):
    model, dirs = ckpt
    out = _edited(ckpt, tmp_path / "out")
    update_provenance(out, recipe="[model]\nid = 'x'\n")  # what aru run records: a run output
    before = _snapshot(model, out)
    refused(_edit(model, dirs, out, "--force"), "is an aru run output, not an aru edit output", str(out))
    _unchanged(before, model, out)


@pytest.mark.parametrize("content", ["{not json", '{"files": "nope"}', "[]", b"\xff\xfe\x00"])
def test_edit_force_refuses_a_folder_with_a_malformed_aru_json(ckpt, tmp_path, content):
    model, dirs = ckpt
    out = tmp_path / "out"
    out.mkdir()
    (out / "aru.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    (out / "weights.bin").write_bytes(b"user data")
    before = _snapshot(model, out)
    refused(_edit(model, dirs, out, "--force"), "not an aru output", str(out))
    _unchanged(before, model, out)


def test_edit_output_is_a_file(ckpt, tmp_path):
    model, dirs = ckpt
    out = tmp_path / "out.txt"
    out.write_text("mine")
    res = _edit(model, dirs, out, "--force")
    refused(res, str(out), "is a file", code=2)
    assert out.read_text() == "mine"


def test_edit_output_is_a_symlink(ckpt, tmp_path):
    """A link is followed (real paths): to an earlier aru output it is replaced with --force and the link kept;
    to a foreign folder it is refused."""
    model, dirs = ckpt
    target = _edited(ckpt, tmp_path / "real-out")
    (tmp_path / "out").symlink_to(target)
    res = _edit(model, dirs, tmp_path / "out", "--force", "--strength", "0.5")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out").is_symlink() and check_provenance(target)["settings"]["strength"] == 0.5
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    (tmp_path / "out2").symlink_to(mine)
    refused(_edit(model, dirs, tmp_path / "out2", "--force"), "not an aru output", str(mine))
    assert (mine / "a.txt").read_text() == "keep"


def test_edit_read_only_output_folder(ckpt, tmp_path, monkeypatch):
    """A read-only destination: one line naming the path and the fix, no traceback (root ignores chmod, so the
    operating system's refusal is simulated at the first write)."""
    model, dirs = ckpt
    parent = tmp_path / "ro"
    parent.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if self.parent == parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    before = _snapshot(model, dirs)
    res = _edit(model, dirs, parent / "out")
    refused(res, "Permission denied", str(parent), "choose a folder you can write to")
    _unchanged(before, model, dirs)
    assert listing(parent) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_edit_read_only_output_folder_chmod(ckpt, tmp_path):
    model, dirs = ckpt
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        refused(_edit(model, dirs, parent / "out"), "Permission denied", str(parent))
    finally:
        parent.chmod(0o755)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_edit_removes_stale_staging_of_dead_processes(ckpt, tmp_path):
    """Issue 15 #5: a ``kill -9`` left ``.NAME.aru-...`` folders that no later run removed (failed before)."""
    model, dirs = ckpt
    dead = _dead_pid()
    stale = [tmp_path / f".out.aru-partial-{dead}-0badf00d", tmp_path / f".out.aru-old-{dead}-0badf00d"]
    legacy = [tmp_path / ".out.aru-partial", tmp_path / ".out.aru-run-x1y2z3"]
    for p in stale + legacy:
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"half")
        (p / "aru.json").write_text("{}")
    live = tmp_path / f".out.aru-partial-{os.getpid()}-0badf00d"  # a live process's: never touched
    live.mkdir()
    other = tmp_path / f".other.aru-partial-{dead}-0badf00d"  # another target's: not this run's business
    other.mkdir()
    res = _edit(model, dirs, tmp_path / "out")
    assert res.exit_code == 0, res.output
    for p in stale + legacy:
        assert not p.exists() and str(p) in res.output
    assert f"process {dead}, which no longer runs" in res.output
    assert live.is_dir() and other.is_dir()
    check_provenance(tmp_path / "out")


def test_edit_refused_while_another_process_writes_the_output(ckpt, tmp_path):
    model, dirs = ckpt
    out = tmp_path / "out"
    lock = tmp_path / ".out.aru-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a running aru holds
    try:
        before = _snapshot(model, dirs)
        refused(_edit(model, dirs, out), "another aru process is writing", str(out))
        _unchanged(before, model, dirs)
        assert not out.exists() and not any(p.name.startswith(".out.aru-partial") for p in tmp_path.iterdir())
    finally:
        os.close(fd)


@pytest.mark.parametrize("what", ["user-folder", "aru-output"])
def test_edit_output_appearing_during_the_edit_is_not_replaced(ckpt, tmp_path, monkeypatch, what):
    """Issue 15 #3: the target is checked again just before the rename."""
    import aru.checkpoint as checkpoint_mod

    model, dirs = ckpt
    out = tmp_path / "out"
    earlier = _edited(ckpt, tmp_path / "earlier")
    real_copy = checkpoint_mod._copy_other_files

    def copy_then_race(*a, **k):
        if what == "user-folder":
            out.mkdir()
            (out / "notes.txt").write_text("written meanwhile")
        else:
            shutil.copytree(earlier, out)
        return real_copy(*a, **k)

    monkeypatch.setattr(checkpoint_mod, "_copy_other_files", copy_then_race)
    res = _edit(model, dirs, out)
    refused(res, str(out), "not an aru output" if what == "user-folder" else "already exists")
    if what == "user-folder":
        assert (out / "notes.txt").read_text() == "written meanwhile"
    else:
        assert tree_sha(out) == tree_sha(earlier)
    assert not [p for p in tmp_path.iterdir() if ".aru-" in p.name]


# ------------------------------------------------------------------------------------------------ aru fit


def _fit(model, prompt_files, out, *extra):
    return aru("fit", model, "--bad", prompt_files / "bad.txt", "--good", prompt_files / "good.txt", "-o", out, *extra)


@pytest.fixture
def organism_copy(tmp_path, organism_dir):
    dst = tmp_path / "organism"
    shutil.copytree(organism_dir, dst)
    return dst


@pytest.mark.parametrize("name", ["model.safetensors", "dirs.safetensors", "sub/dirs.safetensors"])
def test_fit_never_writes_into_the_model(organism_copy, prompt_files, name):
    """Issue 15 #1: ``aru fit MODEL -o MODEL/model.safetensors`` replaced the weights (failed before)."""
    before, names = _snapshot(organism_copy), listing(organism_copy)
    res = _fit(organism_copy, prompt_files, organism_copy / name, "--force")
    refused(res, "overlaps the input", str(organism_copy))
    _unchanged(before, organism_copy)
    assert listing(organism_copy) == names


def test_fit_through_a_symlink_into_the_model(organism_copy, prompt_files, tmp_path):
    (tmp_path / "link").symlink_to(organism_copy)
    before = _snapshot(organism_copy)
    refused(_fit(organism_copy, prompt_files, tmp_path / "link" / "model.safetensors"), "overlaps the input")
    _unchanged(before, organism_copy)


def test_fit_output_is_a_prompt_file(organism_dir, tmp_path, prompt_files):
    bad = tmp_path / "bad.safetensors"  # a prompt file that happens to end in .safetensors: never overwritten
    shutil.copy(prompt_files / "bad.txt", bad)
    before = _snapshot(bad)
    res = aru("fit", organism_dir, "--bad", bad, "--good", prompt_files / "good.txt", "-o", bad, "--force")
    refused(res, "overlaps the input", str(bad))
    _unchanged(before, bad)


def test_fit_replaces_only_an_earlier_directions_file(organism_dir, prompt_files, tmp_path):
    foreign = tmp_path / "weights.safetensors"
    shutil.copy(organism_dir / "model.safetensors", foreign)
    before = _snapshot(foreign)
    refused(_fit(organism_dir, prompt_files, foreign, "--force"), "not an aru output", str(foreign))
    _unchanged(before, foreign)
    earlier = directions_file(tmp_path / "d.safetensors", d=64)
    first = tree_sha(earlier)
    refused(_fit(organism_dir, prompt_files, earlier), "already exists", "--force", str(earlier))
    assert tree_sha(earlier) == first
    res = _fit(organism_dir, prompt_files, earlier, "--force", "--layers", "2")
    assert res.exit_code == 0, res.output
    assert tree_sha(earlier) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors", "weights.safetensors"]


# ------------------------------------------------------------------------------------------------ aru run / demo


def _recipe(tmp_path: Path, prompt_files: Path, output: str, overwrite: bool = False, **extra) -> Path:
    body = f"""
[model]
id = "organism:tuned"
[prompts]
bad = "{prompt_files / "bad.txt"}"
good = "{prompt_files / "good.txt"}"
max_prompts = 40
[fit]
methods = ["diff-means"]
k = [1]
[select]
strengths = [1.0]
edit_layers = ["all"]
confirm = 1
max_prompts = 10
max_new_tokens = 2
[edit]
output = "{output}"
overwrite = {str(overwrite).lower()}
[eval]
max_prompts = 10
max_new_tokens = 2
kl_tokens = 2
"""
    path = tmp_path / "r.toml"
    path.write_text(body)
    return path


def test_run_recipe_output_is_an_existing_file(tmp_path, prompt_files):
    """Issue 15 #2: ``edit.output`` naming an existing file with ``overwrite = true`` deleted the file."""
    victim = tmp_path / "thesis.pdf"
    victim.write_bytes(b"%PDF-1.7 years of work")
    recipe = _recipe(tmp_path, prompt_files, str(victim), overwrite=True)
    refused(aru("run", recipe, "-q"), str(victim), "is a file")
    assert victim.read_bytes() == b"%PDF-1.7 years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml", "thesis.pdf"]


def test_run_output_containing_its_prompt_files(tmp_path, prompt_files):
    recipe = _recipe(tmp_path, prompt_files, str(prompt_files), overwrite=True)
    before = _snapshot(prompt_files)
    refused(aru("run", recipe, "-q"), "overlaps the input", str(prompt_files))
    _unchanged(before, prompt_files)


@pytest.mark.slow  # a whole aru run (about a minute on 2 busy cores); test_policy covers the re-check itself
def test_run_output_appearing_during_the_run_is_not_replaced(tmp_path, prompt_files, monkeypatch):
    """Issue 15 #3: ``aru run`` checked "already exists" only at the start (failed before)."""
    import aru.verify as verify_mod

    out = tmp_path / "out"
    real_verify = verify_mod.verify_edit

    def verify_then_race(*a, **k):
        out.mkdir()
        (out / "notes.txt").write_text("written meanwhile")
        return real_verify(*a, **k)

    monkeypatch.setattr(verify_mod, "verify_edit", verify_then_race)
    recipe = _recipe(tmp_path, prompt_files, str(out))
    refused(aru("run", recipe, "-q"), str(out), "not an aru output")
    assert (out / "notes.txt").read_text() == "written meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.toml"]


def test_demo_overwrite_refuses_a_foreign_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    refused(aru("demo", "-o", mine, "--overwrite", "-q"), "not an aru output", str(mine))
    assert (mine / "a.txt").read_text() == "keep" and listing(tmp_path) == ["mine", "mine/a.txt"]


# ------------------------------------------------------------------------------------------------ gguf, organism


def test_gguf_overwrite_refuses_a_file_that_is_not_a_gguf(ckpt, tmp_path):
    edited = _edited(ckpt, tmp_path / "edited")
    victim = tmp_path / "notes.gguf"
    victim.write_text("not a gguf")
    refused(aru("gguf", edited, "-o", victim, "--overwrite", "--no-install"), "not an aru output", str(victim))
    assert victim.read_text() == "not a gguf"


def test_gguf_output_inside_the_checkpoint(ckpt, tmp_path):
    edited = _edited(ckpt, tmp_path / "edited")
    before = _snapshot(edited)
    refused(aru("gguf", edited, "-o", edited / "model.gguf", "--no-install"), "overlaps the input", str(edited))
    _unchanged(before, edited)


def test_organism_train_refuses_a_foreign_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    refused(aru("organism", "train", "-o", mine, "--small"), "not an aru output", str(mine))
    assert listing(tmp_path) == ["mine", "mine/a.txt"]
