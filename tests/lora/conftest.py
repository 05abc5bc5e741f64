from __future__ import annotations

import sys
from pathlib import Path

# the tiny-model builders live in tests/editor/tiny.py; helpers of this folder in lora_util.py
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "editor"))

import pytest  # noqa: E402

pytest.importorskip("peft")
