"""The directions file: an orthonormal basis Q of shape (k, d) per layer, plus metadata.

This is the contract between the fitter (``aru fit``, :mod:`aru.estimators`) and the editor (``aru edit``).

On disk it is a safetensors file:

- ``basis.all``: (k, d) float32, one basis for every layer; or
- ``basis.layer.{i}``: (k_i, d) float32, a basis fitted at (or to be applied at) decoder layer ``i``;
- optional per-layer diagnostics ``scores.layer.{i}`` (k_i,), ``auroc.layer.{i}`` (k_i,), ...:
  any tensor whose name does not start with ``basis.`` is kept in :attr:`Directions.extras`;
- string metadata: ``aru_format`` (``"1"``), ``hidden_size``, ``method``, ``model_type``,
  ``default_layer`` (the layer whose basis is used when one basis must be chosen), and free-form keys.

Every basis is validated on load and on save: 2-D, finite, ``d == hidden_size``, orthonormal rows
(max |QQᵀ − I| ≤ 1e-4), 1 ≤ k < d.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aru.errors import DirectionsError

FORMAT_VERSION = "1"
ORTHONORMAL_TOL = 1e-4
ALL = "all"

LayerKey = int | str  # a decoder-layer index, or ALL


@dataclass(frozen=True)
class Directions:
    """Orthonormal bases Q, (k, d) float32, keyed by decoder layer index or :data:`ALL`."""

    bases: Mapping[LayerKey, torch.Tensor]
    hidden_size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bases:
            raise DirectionsError("Directions has no basis; fit one with: aru fit MODEL --bad ... --good ...")
        for key, q in self.bases.items():
            if key != ALL and not (isinstance(key, int) and key >= 0):
                raise DirectionsError(f"basis key {key!r} is neither a layer index >= 0 nor {ALL!r}")
            validate_basis(q, self.hidden_size, name=_tensor_name(key))
        if ALL in self.bases and len(self.bases) > 1:
            raise DirectionsError(f"a directions file holds either {ALL!r} or per-layer bases, not both")

    @property
    def layers(self) -> list[int]:
        """The decoder layers with a basis of their own (empty when there is one basis for all)."""
        return sorted(k for k in self.bases if k != ALL)

    @property
    def default_layer(self) -> LayerKey:
        """The key of the basis to use when a single basis is wanted."""
        if ALL in self.bases:
            return ALL
        if "default_layer" in self.metadata:
            layer = int(self.metadata["default_layer"])
            if layer not in self.bases:
                raise DirectionsError(f"default_layer {layer} has no basis (layers: {self.layers})")
            return layer
        if len(self.bases) == 1:
            return next(iter(self.bases))
        raise DirectionsError(
            f"the directions file has bases for layers {self.layers} and no default_layer; "
            "choose one with --source-layer"
        )

    def basis(self, layer: LayerKey | None = None) -> torch.Tensor:
        """The basis fitted at ``layer`` (or the default one), (k, d) float32."""
        key = self.default_layer if layer is None else layer
        if key not in self.bases:
            if ALL in self.bases:
                return self.bases[ALL]
            raise DirectionsError(f"no basis for layer {key!r}; the file has layers {self.layers}")
        return self.bases[key]

    def select(self, layer: LayerKey, k: int | None = None) -> Directions:
        """A single-basis Directions (key :data:`ALL`) from ``layer``, keeping its first ``k`` rows."""
        q = self.basis(layer)
        if k is not None:
            if not 1 <= k <= q.shape[0]:
                raise DirectionsError(f"k={k} is out of range: layer {layer!r} has {q.shape[0]} directions")
            q = q[:k]
        meta = dict(self.metadata, source_layer=str(layer), k=str(q.shape[0]))
        meta.pop("default_layer", None)
        return Directions({ALL: q.contiguous()}, self.hidden_size, meta)


def validate_basis(q: torch.Tensor, hidden_size: int, name: str = "basis") -> None:
    """Raise :class:`DirectionsError` unless ``q`` is a finite orthonormal (k, hidden_size) basis."""
    if not isinstance(q, torch.Tensor):
        raise DirectionsError(f"{name} must be a torch.Tensor, got {type(q).__name__}")
    if q.ndim != 2:
        raise DirectionsError(f"{name} must be 2-D (k, d), got shape {tuple(q.shape)}")
    k, d = q.shape
    if d != hidden_size:
        raise DirectionsError(
            f"{name} has dimension {d} but the model's hidden size is {hidden_size}; "
            "fit the directions on this model (aru fit)"
        )
    if not 1 <= k < d:
        raise DirectionsError(f"{name} has k={k} directions; need 1 <= k < {d}")
    if not torch.isfinite(q).all():
        raise DirectionsError(f"{name} contains NaN or infinite values; refit the directions")
    q64 = q.to(torch.float64)
    err = (q64 @ q64.T - torch.eye(k, dtype=torch.float64)).abs().max().item()
    if err > ORTHONORMAL_TOL:
        raise DirectionsError(
            f"{name} is not orthonormal (max |QQᵀ − I| = {err:.2e} > {ORTHONORMAL_TOL}); "
            "orthonormalise it (aru.directions.orthonormalize) or refit"
        )


def orthonormalize(vectors: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (k, d) float32 for the span of the rows of ``vectors`` (k, d), keeping order and sign
    of each row's component along itself (Gram-Schmidt via QR in float64)."""
    v = vectors.to(torch.float64)
    q, r = torch.linalg.qr(v.T)  # q: (d, k)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1
    return (q * signs).T.contiguous().to(torch.float32)


def _tensor_name(key: LayerKey) -> str:
    return "basis.all" if key == ALL else f"basis.layer.{key}"


def save_directions(directions: Directions, path: str | Path) -> Path:
    """Write ``directions`` to a safetensors file (atomically: temp file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {_tensor_name(k): v.detach().to(torch.float32).contiguous() for k, v in directions.bases.items()}
    for name, t in directions.extras.items():
        if name.startswith("basis."):
            raise DirectionsError(f"extra tensor name {name!r} may not start with 'basis.'")
        tensors[name] = t.detach().contiguous()
    meta = {str(k): str(v) for k, v in directions.metadata.items()}
    meta.update(aru_format=FORMAT_VERSION, hidden_size=str(directions.hidden_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_directions(path: str | Path) -> Directions:
    """Read and validate a directions file written by :func:`save_directions`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DirectionsError(f"directions file {str(path)!r} does not exist; create it with: aru fit MODEL ...")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise DirectionsError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    if meta.get("aru_format") != FORMAT_VERSION or "hidden_size" not in meta:
        raise DirectionsError(
            f"{str(path)!r} is not an aru directions file (metadata aru_format={meta.get('aru_format')!r}); "
            "create it with: aru fit"
        )
    bases: dict[LayerKey, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name == "basis.all":
            bases[ALL] = t.to(torch.float32)
        elif name.startswith("basis.layer."):
            bases[int(name.rsplit(".", 1)[1])] = t.to(torch.float32)
        elif name.startswith("basis."):
            raise DirectionsError(f"{str(path)!r} has an unknown basis tensor {name!r}")
        else:
            extras[name] = t
    hidden = int(meta.pop("hidden_size"))
    meta.pop("aru_format")
    return Directions(bases, hidden, meta, extras)


def describe(directions: Directions) -> str:
    """A one-line human summary (for logs and model cards)."""
    shapes = {str(k): list(v.shape) for k, v in directions.bases.items()}
    return json.dumps({"hidden_size": directions.hidden_size, "bases": shapes, **directions.metadata})
