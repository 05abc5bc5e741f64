"""Kills at random points of aru edit and aru run, and concurrent writers of one output.

The input's sha256 is compared before and after; the output is either absent or complete (its aru.json hashes
hold); what a kill -9 leaves is removed, with a message, by the next writer of that output; SIGTERM unwinds
(nothing is left at all).
"""

from __future__ import annotations

import random
import signal
import time

import pytest
from safety_kit import aru_process, directions_file, tiny_llama, tree_sha

from aru.outputs import Output
from aru.provenance import check_provenance


@pytest.fixture(scope="module")
def bigger(tmp_path_factory):
    """A 25 MB checkpoint, so that a kill can land while the shards are written."""
    root = tmp_path_factory.mktemp("bigger")
    tiny_llama(root / "model", hidden=256, layers=4, vocab=8000)
    directions_file(root / "dirs.safetensors", d=256, k=2)
    return root / "model", root / "dirs.safetensors"


@pytest.fixture(scope="module")
def duration(bigger, tmp_path_factory) -> float:
    """Seconds one ``aru edit`` of ``bigger`` takes here, start to exit (kills are drawn in this range)."""
    return _timed_edit(bigger, tmp_path_factory.mktemp("reference") / "out")


def _timed_edit(bigger, out) -> float:
    model, dirs = bigger
    t = time.perf_counter()
    proc = aru_process("edit", model, "-d", dirs, "-o", out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.perf_counter() - t


def _leftovers(folder, name="out"):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.aru-"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("seed", range(3))
def test_edit_killed_at_a_random_point(bigger, duration, tmp_path, sig, seed):
    model, dirs = bigger
    before = tree_sha(model), tree_sha(dirs)
    delay = random.Random(seed * 7 + sig).uniform(0.3, duration)
    out = tmp_path / "out"
    proc = aru_process("edit", model, "-d", dirs, "-o", out)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert (tree_sha(model), tree_sha(dirs)) == before, "the input changed"
    if proc.returncode == 0:  # it finished before the signal
        check_provenance(out)
        return
    assert "Traceback" not in err, err
    if out.exists():  # the signal came after the final rename: the output must be complete
        check_provenance(out)
        return
    if sig == signal.SIGTERM:
        assert proc.returncode in (143, -signal.SIGTERM), proc.returncode
        assert not [n for n in _leftovers(tmp_path) if "lock" not in n], err  # unwound: staging removed
    # the next writer removes what the killed one left and writes a complete output
    again = aru_process("edit", model, "-d", dirs, "-o", out)
    _, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    check_provenance(out)
    assert _leftovers(tmp_path) == []
    if sig == signal.SIGKILL and "removed" in err2:
        assert "which no longer runs" in err2


def test_two_concurrent_edits_of_one_output(bigger, tmp_path):
    """Issue 15 #3: two edits shared one temporary folder; one reported success over a mixed output."""
    model, dirs = bigger
    out = tmp_path / "out"
    procs = [aru_process("edit", model, "-d", dirs, "-o", out, "--strength", s) for s in ("1.0", "0.5")]
    results = [(p.wait(timeout=300), p.stderr.read() + p.stdout.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    loser = next(msg for rc, msg in results if rc == 1)
    assert str(out) in loser and ("another aru process is writing" in loser or "already exists" in loser), loser
    winner = next(i for i, (rc, _) in enumerate(results) if rc == 0)
    data = check_provenance(out)  # complete and self-consistent: every shard and aru.json from one run
    assert data["settings"]["strength"] == (1.0, 0.5)[winner]
    assert _leftovers(tmp_path) == []


def test_two_concurrent_edits_with_force(bigger, tmp_path):
    model, dirs = bigger
    out = tmp_path / "out"
    _timed_edit(bigger, out)
    procs = [aru_process("edit", model, "-d", dirs, "-o", out, "--force", "--strength", s) for s in ("0.9", "0.8")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert 0 in [rc for rc, _ in results], results
    for rc, msg in results:
        assert rc == 0 or "another aru process is writing" in msg, msg
    assert check_provenance(out)["settings"]["strength"] in (0.9, 0.8)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_run_killed_while_running(tmp_path, sig):
    """Issue 15 #5: a killed ``aru run`` left ``.NAME.aru-run-XXXX/`` that no later run removed (failed before)."""
    from aru.organism import shipped

    before = tree_sha(shipped("tuned"))
    out = tmp_path / "out"
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nid = "organism:tuned"\n[prompts]\nsource = "organism"\n')
    proc = aru_process("run", recipe, "-o", out, "-q")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _leftovers(tmp_path):
        time.sleep(0.1)  # the staging folder exists from the start of the run
    time.sleep(random.Random(sig).uniform(0.0, 2.0))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert tree_sha(shipped("tuned")) == before and not out.exists()
    left = [n for n in _leftovers(tmp_path) if "lock" not in n]
    if sig == signal.SIGTERM:
        assert left == [], left
    said = []
    with Output(out, "run", say=said.append):  # the next writer of this output
        pass
    assert _leftovers(tmp_path) == []
    assert len(said) == len(left) and all("which no longer runs" in s for s in said)
