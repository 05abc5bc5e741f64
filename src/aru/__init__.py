"""aru: automatic reinforcement unlearning.

Find the directions along which fine-tuning biased the residual stream, and fold their projection
P = I - QᵀQ into every weight that writes into it, so the saved checkpoint behaves unlearned with no hooks.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aru")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

from aru.directions import Directions, load_directions, save_directions  # noqa: E402
from aru.errors import (  # noqa: E402
    AruError,
    AruWarning,
    CheckpointError,
    DirectionsError,
    ProvenanceError,
    UnsupportedArchitectureError,
)

__all__ = [
    "AruError",
    "AruWarning",
    "CheckpointError",
    "Directions",
    "DirectionsError",
    "ProvenanceError",
    "UnsupportedArchitectureError",
    "__version__",
    "load_directions",
    "save_directions",
]
