from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "editor"))


@pytest.fixture(autouse=True)
def _private_arch_cache(tmp_path, monkeypatch):
    """Every test derives into its own cache folder (and the in-process cache starts empty)."""
    from aru.arch import derive

    monkeypatch.setenv("ARU_CACHE_DIR", str(tmp_path / "aru-cache"))
    monkeypatch.setattr(derive, "_MEMORY", {})
