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

from aru.errors import (  # noqa: E402
    AruError,
    AruWarning,
    CheckpointError,
    DirectionsError,
    ProvenanceError,
    UnsupportedArchitectureError,
)

# heavier parts of the API, imported on first use (``import aru`` stays cheap for the CLI)
_LAZY = {
    "Directions": "aru.directions",
    "EditPlan": "aru.model_edit",
    "EditResult": "aru.checkpoint",
    "FitResult": "aru.estimators",
    "PushResult": "aru.hub",
    "VerifyResult": "aru.verify",
    "build_model_card": "aru.hub",
    "capture_activations": ("aru.capture", "capture"),
    "edit_checkpoint": "aru.checkpoint",
    "fit_directions": "aru.estimators",
    "fold_into_model": "aru.model_edit",
    "get_estimator": "aru.estimators",
    "get_spec": "aru.arch",
    "load_directions": "aru.directions",
    "load_prompts": "aru.prompts",
    "load_recipe": "aru.recipe",
    "make_plan": "aru.model_edit",
    "projection_hooks": "aru.model_edit",
    "push": "aru.hub",
    "run_recipe": "aru.pipeline",
    "save_directions": "aru.directions",
    "verify_edit": "aru.verify",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'aru' has no attribute {name!r}")


__all__ = [
    "AruError",
    "AruWarning",
    "CheckpointError",
    "Directions",
    "DirectionsError",
    "EditPlan",
    "EditResult",
    "FitResult",
    "ProvenanceError",
    "PushResult",
    "UnsupportedArchitectureError",
    "VerifyResult",
    "__version__",
    "build_model_card",
    "capture_activations",
    "edit_checkpoint",
    "fit_directions",
    "fold_into_model",
    "get_estimator",
    "get_spec",
    "load_directions",
    "load_prompts",
    "load_recipe",
    "make_plan",
    "projection_hooks",
    "push",
    "run_recipe",
    "save_directions",
    "verify_edit",
]
