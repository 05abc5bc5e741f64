import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from safety_kit import directions_file, tiny_llama  # noqa: E402


@pytest.fixture(autouse=True)
def _bug_logs(tmp_path_factory, monkeypatch):
    """Bug logs go to a folder of their own, never into the user's home during tests."""
    monkeypatch.setenv("ARU_LOG_DIR", str(tmp_path_factory.mktemp("bug-logs")))


@pytest.fixture(scope="session")
def _tiny_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("master")
    tiny_llama(root / "model")
    directions_file(root / "dirs.safetensors")
    return root


@pytest.fixture
def ckpt(tmp_path, _tiny_master):
    """(model folder, directions file), fresh copies in this test's folder."""
    shutil.copytree(_tiny_master / "model", tmp_path / "model")
    shutil.copy(_tiny_master / "dirs.safetensors", tmp_path / "dirs.safetensors")
    return tmp_path / "model", tmp_path / "dirs.safetensors"


@pytest.fixture(scope="session")
def organism_dir():
    from aru.organism import shipped

    return shipped("tuned")


@pytest.fixture(scope="session")
def prompt_files(tmp_path_factory):
    """Small organism prompt files for aru fit and recipes."""
    from aru.organism import organism_prompts

    d = tmp_path_factory.mktemp("prompts")
    bad, good = organism_prompts("train")
    (d / "bad.txt").write_text("\n".join(bad[::9][:40]) + "\n")
    (d / "good.txt").write_text("\n".join(good[::9][:40]) + "\n")
    return d
