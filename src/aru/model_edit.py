"""Edit plans, and applying them to a model in memory: with hooks (no weight writes) or by folding.

An :class:`EditPlan` says which basis is projected out of which writers:

- ``embed``: the basis folded into the token (and position) embeddings, or None;
- ``layers[ℓ]``: the basis folded into the writers (attention output, MLP / expert / shared-expert down
  projections, their biases) of decoder layer ℓ;
- ``strength`` λ: each writer W becomes (I − λ QᵀQ) W; λ = 1 is the projection.

Layer convention (shared with :mod:`aru.capture`): residual index ℓ is the input of decoder layer ℓ
(ℓ = 0 is the embedding output) and index L the output of the last layer. So with ``per_layer=True``
the writers of layer ℓ use the basis fitted at index ℓ + 1 (the stream they write into) and the
embeddings the basis at index 0.

:func:`projection_hooks` projects each writer's output during a forward pass (the reference the folded
checkpoint must reproduce, and a cheap way to score candidates); :func:`fold_into_model` writes the same
edit into the parameters.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from aru.arch import ArchSpec, Writer, spec_of
from aru.directions import ALL, Directions
from aru.errors import AruWarning, DirectionsError
from aru.fold import fold_tensor, oblique_basis

POSTNORM_MODES = ("orthogonal", "oblique")


@dataclass(frozen=True)
class EditPlan:
    """Which basis (k, d) float32 goes into which writers; see the module docstring."""

    embed: torch.Tensor | None
    layers: dict[int, torch.Tensor]
    strength: float = 1.0
    info: dict = field(default_factory=dict)

    def basis_for(self, role: str, layer: int | None) -> torch.Tensor | None:
        if role in ("embed", "pos_embed"):
            return self.embed
        return self.layers.get(layer)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return {
            "edit_embeddings": self.embed is not None,
            "layers": sorted(self.layers),
            "strength": self.strength,
            "k": sorted({int(q.shape[0]) for q in self.layers.values()}),
            **self.info,
        }


def parse_layers(spec: str | Iterable[int] | None, num_layers: int) -> list[int] | None:
    """``"all"``/None → None (every layer); ``"3"``, ``"2-5"``, ``"0,2,4-6"`` or an iterable → sorted indices.

    Ranges are inclusive. Raises ValueError naming any index outside [0, num_layers).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = part.split("-", 1)
                    if int(hi) < int(lo):
                        raise IndexError(f"layers {spec!r}: the range {part!r} is reversed; write it as '{hi}-{lo}'")
                    out.update(range(int(lo), int(hi) + 1))
                else:
                    out.add(int(part))
            except IndexError as exc:
                raise ValueError(str(exc)) from None
            except ValueError:
                raise ValueError(f"cannot parse layers {spec!r}: use e.g. '3', '2-5', '0,2,4-6' or 'all'") from None
        layers = sorted(out)
    else:
        layers = sorted({int(i) for i in spec})
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad or not layers:
        raise ValueError(f"layers {spec!r} out of range: the model has decoder layers 0..{num_layers - 1}")
    return layers


def make_plan(
    directions: Directions,
    num_layers: int,
    *,
    layers: str | Iterable[int] | None = None,
    source_layer: int | str | None = None,
    strength: float = 1.0,
    per_layer: bool = False,
    k: int | None = None,
    embed: bool | None = None,
) -> EditPlan:
    """An :class:`EditPlan` from a directions file.

    - ``per_layer=False`` (default): one basis, from ``source_layer`` (default: the file's default layer),
      for the embeddings and every edited layer (abliteration's choice).
    - ``per_layer=True``: layer ℓ gets the basis at residual index ℓ + 1, the embeddings the one at 0.
    - ``layers``: the decoder layers whose writers are edited (default all). The embeddings are edited when
      layer 0 is, unless ``embed`` says otherwise.
    - ``k``: keep only the first k directions of each basis.
    """
    if not 0.0 < strength <= 2.0:
        raise ValueError(f"strength {strength} is outside (0, 2]; 1 projects the directions out")
    chosen = parse_layers(layers, num_layers)
    edit = list(range(num_layers)) if chosen is None else chosen
    if embed is None:
        embed = 0 in edit

    def trim(q: torch.Tensor) -> torch.Tensor:
        if k is None:
            return q
        if not 1 <= k <= q.shape[0]:
            raise DirectionsError(f"k={k} is out of range: the basis has {q.shape[0]} directions")
        return q[:k].contiguous()

    if not per_layer:
        key = directions.default_layer if source_layer is None else source_layer
        if isinstance(key, str) and key != ALL:
            key = int(key)
        if key not in directions.bases:
            raise DirectionsError(
                f"source layer {key!r} has no basis in the directions file "
                f"(it has {sorted(map(str, directions.bases))})"
            )
        q = trim(directions.bases[key])
        info = {"source_layer": key if key == ALL else int(key), "per_layer": False}
        return EditPlan(q if embed else None, {i: q for i in edit}, float(strength), info)
    if ALL in directions.bases:
        raise DirectionsError("per_layer needs a directions file with one basis per layer, not a single 'all' basis")
    missing = [i + 1 for i in edit if i + 1 not in directions.bases] + (
        [0] if embed and 0 not in directions.bases else []
    )
    if missing:
        raise DirectionsError(
            f"per_layer edit needs bases at residual indices {sorted(set(missing))}, which the directions file lacks "
            f"(it has {directions.layers}); fit them with aru fit --layers all, or drop per_layer"
        )
    return EditPlan(
        trim(directions.bases[0]) if embed else None,
        {i: trim(directions.bases[i + 1]) for i in edit},
        float(strength),
        {"per_layer": True},
    )


@dataclass(frozen=True)
class WriterParam:
    """A writer parameter found in a model: its name, spec entry, decoder layer and block prefix."""

    name: str
    writer: Writer
    layer: int | None
    block: str


def find_writers(model: nn.Module, spec: ArchSpec | None = None) -> list[WriterParam]:
    """Every parameter of ``model`` that writes into the residual stream, per its :class:`ArchSpec`."""
    spec = spec or spec_of(model)
    found = []
    for name, _ in model.named_parameters():
        hit = spec.match(name)
        if hit:
            found.append(WriterParam(name, *hit))
    if not found:
        raise DirectionsError(f"no residual-stream writers found in {type(model).__name__}: the arch table is wrong")
    return found


def _module_name(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0]


def _project_(x: torch.Tensor, q: torch.Tensor, strength: float) -> torch.Tensor:
    qc = q.to(device=x.device, dtype=torch.float32 if x.dtype != torch.float64 else torch.float64)
    xc = x.to(qc.dtype)
    return (xc - strength * (xc @ qc.T) @ qc).to(x.dtype)


def hook_targets(model: nn.Module, plan: EditPlan, spec: ArchSpec | None = None) -> dict[str, torch.Tensor]:
    """module name → basis: the modules whose outputs the hooked reference projects.

    Writers' own modules (Linear, Embedding, fused experts, shared experts) for pre-norm families; for
    post-norm families the norm after the attention / MLP writer, where the ideal projection sits.
    """
    spec = spec or spec_of(model)
    targets: dict[str, torch.Tensor] = {}
    for wp in find_writers(model, spec):
        q = plan.basis_for(wp.writer.role, wp.layer)
        if q is None:
            continue
        norm = spec.postnorm_name(wp.writer, wp.block)
        targets[_module_name(norm) if norm else _module_name(wp.name)] = q
    return targets


@contextlib.contextmanager
def projection_hooks(
    model: nn.Module, plan: EditPlan, spec: ArchSpec | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every writer's output x becomes x − λ (x Qᵀ) Q (no weight is modified).

    Yields the hooked module names → basis. Hooks are removed on exit, also on error.
    """
    targets = hook_targets(model, plan, spec)
    handles = []
    try:
        for name, q in targets.items():
            module = model.get_submodule(name)

            def hook(_mod, _inp, out, q=q):
                if isinstance(out, tuple):
                    return (_project_(out[0], q, plan.strength), *out[1:])
                return _project_(out, q, plan.strength)

            handles.append(module.register_forward_hook(hook))
        yield targets
    finally:
        for h in handles:
            h.remove()


def is_tied(model: nn.Module) -> bool:
    """Whether the output head shares its weight with the input embedding."""
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


@torch.no_grad()
def fold_into_model(
    model: nn.Module,
    plan: EditPlan,
    *,
    keep_tied: bool = False,
    postnorm: str = "orthogonal",
    compute_dtype: torch.dtype = torch.float32,
    spec: ArchSpec | None = None,
) -> dict:
    """Fold ``plan`` into ``model``'s parameters in place. Returns a report (edited names, untied, approximate).

    Tied embeddings are untied (the head keeps the original matrix, ``config.tie_word_embeddings = False``)
    unless ``keep_tied``, which edits the shared matrix and so also projects the output head (approximate).
    Post-norm families fold ``orthogonal`` (P into W) or ``oblique`` (see :func:`aru.fold.oblique_basis`);
    both are approximate and warn.
    """
    if postnorm not in POSTNORM_MODES:
        raise ValueError(f"postnorm {postnorm!r} is not one of {POSTNORM_MODES}")
    spec = spec or spec_of(model)
    writers = find_writers(model, spec)
    params = dict(model.named_parameters())
    untied = False
    approximate: list[str] = []
    if plan.embed is not None and is_tied(model):
        if keep_tied:
            approximate.append("keep_tied: the shared matrix also projects the output head")
        else:
            head = model.get_output_embeddings()
            head.weight = nn.Parameter(head.weight.detach().clone())
            model.config.tie_word_embeddings = False
            untied = True
    if spec.postnorm and plan.layers:
        approximate.append(f"{spec.model_type} has post-norm blocks: the {postnorm} fold is approximate")
    edited = []
    for wp in writers:
        q = plan.basis_for(wp.writer.role, wp.layer)
        if q is None:
            continue
        norm = spec.postnorm_name(wp.writer, wp.block)
        if norm and postnorm == "oblique":
            q = oblique_basis(q, params[norm].detach().float() + spec.norm_offset)
        p = params[wp.name]
        if wp.writer.layout.startswith("experts"):
            module = model.get_submodule(_module_name(wp.name))
            transposed = getattr(module, "is_transposed", None)
            if transposed is not None and transposed != (wp.writer.layout == "experts_in_out") and p.ndim == 3:
                raise DirectionsError(f"{wp.name}: experts layout {wp.writer.layout} contradicts is_transposed")
        p.data.copy_(
            fold_tensor(
                p.data,
                q.to(p.device),
                wp.writer.layout,
                strength=plan.strength,
                compute_dtype=compute_dtype,
                name=wp.name,
            )
        )
        edited.append(wp.name)
    for msg in approximate:
        warnings.warn(msg, AruWarning, stacklevel=2)
    return {"edited": edited, "untied": untied, "approximate": approximate, "exact": not approximate}
