"""Export the edit as an exact PEFT LoRA adapter: MBs instead of a re-written checkpoint.

aru's fold of a writer W is W − λ QᵀQ W, a rank-k update, so it *is* a LoRA adapter (scaling 1, r = k):

==================================  ==========================  =============================  =================
writer (layout, see :mod:`aru.arch`)  PEFT module                 lora_A (r × n)                 lora_B (d × r)
==================================  ==========================  =============================  =================
nn.Linear (d, n), ``out_in``        ``lora_A/B.weight``         Q W                            −λ Qᵀ
GPT-2 Conv1D (n, d), ``in_out``     same, ``fan_in_fan_out``    (W Qᵀ)ᵀ                        −λ Qᵀ
embedding (V, d)                    ``lora_embedding_A/B``      (E Qᵀ)ᵀ   (r × V)              −λ Qᵀ
bias (d,) of a targeted Linear      ``lora_B.bias``             —                              −λ Qᵀ(Q b)
fused experts (E, d, i)             ``target_parameters``       rows e·r…: Q W_e  (r·E × i)     −λ Qᵀ per expert
==================================  ==========================  =============================  =================

The targets, bases and strength come from the same plan as the streaming checkpoint editor
(:func:`aru.model_edit.make_plan` and the editor's tensor planning), so base + adapter equals the folded
checkpoint. Facts about the modules (Linear / Conv1D / Embedding, bias or not, fused experts, in-memory names)
come from the model built on the meta device, never from shapes.

- **Tied embeddings**: an embedding LoRA changes the input embedding only; the output head keeps the original
  matrix. That is the checkpoint editor's default (untie) semantics. ``keep_tied`` (head projected too) cannot be
  expressed and is refused. ``merge_and_unload`` on a tied base merges into the shared matrix, so untie the
  base first (:func:`aru.lora_peft.load_with_adapter` does).
- **Biases**: PEFT's ``lora_bias=True`` (peft ≥ 0.14) adds a bias to ``lora_B``; it is one switch for every
  target and PEFT refuses it on embeddings and fused experts, and cannot merge it into a module without a bias.
  ``adapter_bias="replace"`` instead stores the folded module (weight and bias) in ``modules_to_save``: exact,
  but as large as those modules. ``auto`` takes ``lora_bias`` where it works, else ``replace``.
- **Rank**: r is the largest k of the plan; smaller bases are padded with zero rows / columns (still exact).
- Factors are computed in ``dtype`` (float32/float64) and stored in ``adapter_dtype`` (float32 by default).

Memory is bounded: the adapter file's header is written first (every shape is known from the checkpoint's
headers), then each writer is read (embeddings in row blocks), factored and appended. The folder is written
beside the output and renamed when complete, with ``aru.json`` provenance as for checkpoints.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aru.arch import ArchSpec
from aru.directions import Directions
from aru.errors import AruWarning, CheckpointError, DirectionsError
from aru.fold import fold_tensor
from aru.model_edit import POSTNORM_MODES
from aru.provenance import file_sha256, hash_folder, record_directions, write_provenance
from aru.safetensors_io import DTYPE_NAMES, DTYPES, TensorInfo, encode_header, tensor_to_bytes

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIAS_MODES = ("auto", "lora_bias", "replace")
ADAPTER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PREFIX = "base_model.model."  # PEFT's prefix of every saved key
BLOCK_BYTES = 16 << 20  # float32 bytes of embedding rows read per block
_EXPERT = re.compile(r".*\.experts\.(?P<e>\d+)\..*")


def is_adapter(folder: str | Path) -> bool:
    """Whether ``folder`` is a PEFT adapter folder (rather than a checkpoint)."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


@dataclass
class _Target:
    """One PEFT target: the in-memory module and the checkpoint tensors that feed it."""

    module: str  # in-memory module name (PEFT target)
    kind: str  # linear | conv1d | embedding | experts
    q: torch.Tensor  # (k, d) basis folded into it
    weight: str | None = None  # checkpoint tensor of the weight (linear, conv1d, embedding, fused experts)
    bias: str | None = None  # checkpoint tensor of an edited bias
    experts: dict[int, str] = field(default_factory=dict)  # expert index -> per-expert checkpoint tensor
    num_experts: int = 0
    param: str = ""  # fused-experts parameter name (target_parameters)
    replace: bool = False  # stored whole (folded) in modules_to_save


@dataclass
class AdapterResult:
    """What :func:`export_adapter` did."""

    output: Path
    targets: list[str]
    modules_to_save: list[str]
    rank: int
    lora_bias: bool
    untied: bool
    approximate: list[str]
    seconds: float
    bytes_written: int
    checkpoint_bytes: int
    provenance: dict = field(default_factory=dict)
    has_embedding: bool = False

    @property
    def exact(self) -> bool:
        return not self.approximate

    @property
    def vllm_notes(self) -> list[str]:
        """Why vLLM's LoRA loader would refuse this adapter (read from its source, see docs/lora.md)."""
        notes = []
        if self.lora_bias:
            notes.append("its loader accepts lora_A/lora_B weights and embedding factors only, not lora_B.bias")
        if self.modules_to_save:
            notes.append("it refuses adapters with modules_to_save")
        if self.has_embedding:
            notes.append(
                "it loads an embedding LoRA only for model classes that list the module in embedding_modules "
                "(LlamaForCausalLM does, Qwen2ForCausalLM does not)"
            )
        return notes

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "format": "peft",
            "targets": len(self.targets),
            "modules_to_save": self.modules_to_save,
            "rank": self.rank,
            "lora_bias": self.lora_bias,
            "untied": self.untied,
            "exact": self.exact,
            "approximate": self.approximate,
            "seconds": round(self.seconds, 3),
            "bytes_written": self.bytes_written,
            "checkpoint_bytes": self.checkpoint_bytes,
            "vllm_notes": self.vllm_notes,
        }


def meta_model(folder: Path):
    """The model of ``folder``'s config on the meta device: module names and types, no weights."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    finally:
        transformers.logging.set_verbosity(verbosity)


def _kind(module: torch.nn.Module) -> str:
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, Conv1D):
        return "conv1d"
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    return type(module).__name__


def _memory_module(disk_module: str, modules: dict[str, torch.nn.Module]) -> str | None:
    """The in-memory module name of a checkpoint module name (they may differ by the base-model prefix)."""
    if disk_module in modules:
        return disk_module
    hits = [m for m in modules if m.endswith("." + disk_module)] or [
        m for m in modules if m and disk_module.endswith("." + m)
    ]
    return hits[0] if len(hits) == 1 else None


def _experts_target(spec: ArchSpec, model, layer: int | None, name: str) -> tuple[str, str, int]:
    """(module, parameter, number of experts) of the fused experts parameter a per-expert tensor belongs to."""
    from aru.model_edit import find_writers

    for wp in find_writers(model, spec):
        if wp.writer.layout.startswith("experts") and wp.layer == layer and wp.writer.layout != "experts_bias":
            module, param = wp.name.rsplit(".", 1)
            if wp.writer.layout != "experts_out_in":
                break
            return module, param, int(model.get_parameter(wp.name).shape[0])
    raise CheckpointError(
        f"{name}: its fused experts tensor has a layout PEFT's target_parameters cannot express exactly; "
        "export a checkpoint instead (aru edit without --format peft)"
    )


def plan_adapter(spec: ArchSpec, edits: dict, model) -> dict[str, _Target]:
    """module name → :class:`_Target` for the editor's tensor plan ``edits`` (name → edit with layout and q)."""
    modules = dict(model.named_modules())
    targets: dict[str, _Target] = {}
    for name, edit in edits.items():
        layer = spec.match(name)[1]
        layout = edit.writer_layout
        disk_module, attr = name.rsplit(".", 1)
        if layout == "experts_bias":
            raise CheckpointError(
                f"{name}: PEFT cannot express the edit of a fused experts bias (lora_bias is not supported on "
                "target_parameters); export a checkpoint instead (aru edit without --format peft)"
            )
        hit = _EXPERT.fullmatch(name)
        module = _memory_module(disk_module, modules)
        if layout == "experts_out_in" or (module is None and hit):
            mod, param, n = _experts_target(spec, model, layer, name)
            t = targets.setdefault(mod, _Target(mod, "experts", edit.q, param=param, num_experts=n))
            if layout == "experts_out_in":
                t.weight = name
            else:
                t.experts[int(hit["e"])] = name
            continue
        if layout == "experts_in_out":
            raise CheckpointError(f"{name}: transposed fused experts (E, i, d) are not supported by --format peft")
        if module is None:
            raise CheckpointError(f"{name}: no module {disk_module!r} in the model built from config.json")
        kind = _kind(modules[module])
        expected = {"out_in": "linear", "in_out": "conv1d", "embed": "embedding", "bias": ("linear", "conv1d")}
        if kind not in expected[layout]:
            raise CheckpointError(
                f"{name}: layout {layout!r} but the module {module!r} is a {kind}; the arch table is wrong"
            )
        t = targets.setdefault(module, _Target(module, kind, edit.q))
        if not torch.equal(t.q, edit.q):
            raise DirectionsError(f"{name}: the weight and bias of {module!r} are planned with different bases")
        if attr == "bias":
            t.bias = name
        else:
            t.weight = name
    for t in targets.values():
        if t.kind == "experts" and t.weight is None and sorted(t.experts) != list(range(t.num_experts)):
            raise CheckpointError(f"{t.module}: the checkpoint has experts {sorted(t.experts)} of {t.num_experts}")
        if t.kind != "experts" and t.weight is None:
            raise CheckpointError(f"{t.bias}: its module's weight is not edited, so no LoRA target carries the bias")
    return targets


def choose_bias(targets: dict[str, _Target], modules: dict, mode: str) -> bool:
    """Decide how edited biases are stored; marks replaced targets. Returns whether ``lora_bias`` is used."""
    biased = [t for t in targets.values() if t.bias]
    if not biased:
        return False
    blockers = [
        f"{t.module} ({'an embedding' if t.kind == 'embedding' else 'fused experts'})"
        for t in targets.values()
        if t.kind in ("embedding", "experts")
    ] + [
        f"{t.module} (no bias to merge into)"
        for t in targets.values()
        if t.kind in ("linear", "conv1d") and getattr(modules[t.module], "bias", None) is None
    ]
    if mode == "lora_bias" and blockers:
        raise CheckpointError(
            f"adapter_bias='lora_bias' is one switch for every LoRA target, and PEFT cannot put a bias on "
            f"{', '.join(blockers[:4])}{' ...' if len(blockers) > 4 else ''}. Use --adapter-bias replace (the "
            "biased modules are stored whole in modules_to_save) or auto, or edit fewer modules (--layers)"
        )
    if mode == "replace" or (mode == "auto" and blockers):
        for t in biased:
            t.replace = True
        return False
    return True


def _factors(t: _Target, reader, strength: float, compute: torch.dtype, r: int):
    """Yield (key suffix, tensor) of target ``t``'s adapter tensors, A and B padded to rank ``r``."""
    q = t.q.to(compute)
    k = q.shape[0]
    b_mat = torch.zeros(q.shape[1], r, dtype=compute)
    b_mat[:, :k] = -strength * q.T
    if t.replace:
        for name, layout in ((t.weight, "conv1d" if t.kind == "conv1d" else "linear"), (t.bias, "bias")):
            w = reader(name)
            lay = {"linear": "out_in", "conv1d": "in_out", "bias": "bias"}[layout]
            yield name.rsplit(".", 1)[1], fold_tensor(w, t.q, lay, strength=strength, compute_dtype=compute, name=name)
        return
    if t.kind == "embedding":
        yield "lora_embedding_A", _embedding_a(t, reader, q, r)
        yield "lora_embedding_B", b_mat
        return
    if t.kind == "experts":
        yield "lora_A.weight", _experts_a(t, reader, q, r)
        # PEFT reads lora_B (d, r·E) as (d, r, E): column j·E + e is expert e's j-th column
        yield "lora_B.weight", b_mat[:, :, None].expand(-1, -1, t.num_experts).reshape(q.shape[1], -1)
        return
    w = reader(t.weight).to(compute)
    a = torch.zeros(r, w.shape[1] if t.kind == "linear" else w.shape[0], dtype=compute)
    a[:k] = q @ w if t.kind == "linear" else (w @ q.T).T
    yield "lora_A.weight", a
    yield "lora_B.weight", b_mat
    if t.bias is not None:
        b = reader(t.bias).to(compute)
        yield "lora_B.bias", -strength * q.T @ (q @ b)


def _embedding_a(t: _Target, reader, q: torch.Tensor, r: int) -> torch.Tensor:
    rows, d = reader(t.weight, shape_only=True)
    step = max(1, BLOCK_BYTES // (4 * d))
    a = torch.zeros(r, rows, dtype=q.dtype)
    for i in range(0, rows, step):
        a[: q.shape[0], i : i + step] = (reader(t.weight, rows=(i, min(i + step, rows))).to(q.dtype) @ q.T).T
    return a


def _experts_a(t: _Target, reader, q: torch.Tensor, r: int) -> torch.Tensor:
    k = q.shape[0]
    if t.weight is not None:  # fused (E, d, i) on disk
        fused = reader(t.weight)
        mats = [fused[e] for e in range(t.num_experts)]
    else:
        mats = None
    inner = (mats[0] if mats else reader(t.experts[0])).shape[1]
    a = torch.zeros(t.num_experts * r, inner, dtype=q.dtype)
    for e in range(t.num_experts):
        w = mats[e] if mats else reader(t.experts[e])
        a[e * r : e * r + k] = q @ w.to(q.dtype)
    return a


def _shapes(t: _Target, shape_of, r: int, d: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(key suffix, shape, stored in the checkpoint's dtype) of target ``t``'s adapter tensors, in write order."""
    if t.replace:
        return [("weight", shape_of(t.weight), True), ("bias", shape_of(t.bias), True)]
    if t.kind == "embedding":
        return [("lora_embedding_A", (r, shape_of(t.weight)[0]), False), ("lora_embedding_B", (d, r), False)]
    if t.kind == "experts":
        inner = shape_of(t.weight)[2] if t.weight else shape_of(t.experts[0])[1]
        return [("lora_A.weight", (t.num_experts * r, inner), False), ("lora_B.weight", (d, t.num_experts * r), False)]
    w = shape_of(t.weight)
    out = [("lora_A.weight", (r, w[1] if t.kind == "linear" else w[0]), False), ("lora_B.weight", (d, r), False)]
    return out + ([("lora_B.bias", (d,), False)] if t.bias else [])


def adapter_config(targets: dict[str, _Target], *, rank: int, lora_bias: bool, base: str, revision: str | None) -> dict:
    """The ``adapter_config.json`` PEFT (and vLLM) read: scaling lora_alpha / r = 1, no dropout."""
    lora = sorted(t.module for t in targets.values() if not t.replace and t.kind != "experts")
    params = sorted(f"{t.module}.{t.param}" for t in targets.values() if t.kind == "experts")
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "revision": revision,
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "target_modules": lora,
        "target_parameters": params or None,
        "modules_to_save": sorted(t.module for t in targets.values() if t.replace) or None,
        "fan_in_fan_out": any(t.kind == "conv1d" for t in targets.values()),
        "bias": "none",
        "lora_bias": lora_bias,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
        "layers_pattern": None,
    }


def _reader(folder: Path, where: dict[str, str]):
    from safetensors import safe_open

    def read(name: str, *, rows: tuple[int, int] | None = None, shape_only: bool = False):
        with safe_open(folder / where[name], framework="pt") as f:
            if shape_only:
                return tuple(f.get_slice(name).get_shape())
            if rows is not None:
                return f.get_slice(name)[rows[0] : rows[1]]
            return f.get_tensor(name)

    return read


def _layout(targets: list[_Target], shape_of, *, adapter_dtype, rank: int, d: int, dtypes) -> list[TensorInfo]:
    """The adapter file's tensors (name, dtype, shape, offsets), in write order, from the checkpoint's headers."""
    infos, offset = [], 0
    for t in targets:
        for suffix, shape, native in _shapes(t, shape_of, rank, d):
            dtype = dtypes[t.weight if suffix == "weight" else t.bias] if native else DTYPE_NAMES[adapter_dtype]
            n = math.prod(shape) * DTYPES[dtype].itemsize
            infos.append(TensorInfo(f"{PREFIX}{t.module}.{suffix}", dtype, tuple(shape), offset, offset + n))
            offset += n
    return infos


def _write_adapter(path: Path, targets: list[_Target], infos: list[TensorInfo], read, *, strength, compute, rank):
    """Stream the adapter's safetensors file: the header first, then each target's tensors as they are computed."""
    with open(path, "wb") as fo:
        fo.write(encode_header(infos, {"format": "pt"}))
        it = iter(infos)
        for t in targets:
            for suffix, tensor in _factors(t, read, strength, compute, rank):
                info = next(it)
                assert info.name.endswith("." + suffix) and tuple(tensor.shape) == info.shape, (info, tensor.shape)
                out = tensor.to(DTYPES[info.dtype])
                if not bool(torch.isfinite(out).all()):
                    raise CheckpointError(f"the adapter tensor {info.name} is not finite; nothing was written")
                fo.write(tensor_to_bytes(out))


def export_adapter(
    model: str | Path,
    directions: str | Path | Directions,
    output: str | Path,
    *,
    layers: str | list[int] | None = None,
    source_layer: int | str | None = None,
    per_layer: bool = False,
    k: int | None = None,
    strength: float = 1.0,
    keep_tied: bool = False,
    postnorm: str = "orthogonal",
    dtype: str = "float32",
    adapter_dtype: str = "float32",
    adapter_bias: str = "auto",
    force: bool = False,
    revision: str | None = None,
    extra_provenance: dict | None = None,
) -> AdapterResult:
    """Write ``output``: a PEFT LoRA adapter that, on top of ``model``, equals the folded checkpoint
    :func:`aru.checkpoint.edit_checkpoint` would write with the same arguments (see the module docstring)."""
    from aru.checkpoint import COMPUTE_DTYPES, prepare_edit

    start = time.perf_counter()
    if postnorm not in POSTNORM_MODES:
        raise ValueError(f"postnorm {postnorm!r} is not one of {POSTNORM_MODES}")
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(COMPUTE_DTYPES)} (the factors' arithmetic precision)")
    if adapter_dtype not in ADAPTER_DTYPES:
        raise ValueError(f"adapter_dtype {adapter_dtype!r} is not one of {sorted(ADAPTER_DTYPES)}")
    if adapter_bias not in ADAPTER_BIAS_MODES:
        raise ValueError(f"adapter_bias {adapter_bias!r} is not one of {ADAPTER_BIAS_MODES}")
    prep = prepare_edit(
        model, directions, output, layers=layers, source_layer=source_layer, per_layer=per_layer, k=k,
        strength=strength, postnorm=postnorm, force=force, revision=revision,
    )  # fmt: skip
    folder, repo_id, revision, output = prep.folder, prep.repo_id, prep.revision, prep.output
    directions, directions_path, spec, plan = prep.directions, prep.directions_path, prep.spec, prep.plan
    hidden, shards, headers, edits = prep.hidden, prep.shards, prep.headers, prep.edits
    where = {name: s for s, h in headers.items() for name in h.tensors}
    dtypes = {name: h.tensors[name].dtype for h in headers.values() for name in h.tensors}
    tied = spec.lm_head not in where
    if tied and plan.embed is not None and keep_tied:
        raise CheckpointError(
            "keep_tied cannot be expressed as an adapter: an embedding LoRA changes the input embedding only, so "
            "the output head keeps the original matrix (the untie semantics). Drop --keep-tied, or export a "
            "checkpoint (aru edit without --format peft) to keep the head projected"
        )
    meta = meta_model(folder)
    modules = dict(meta.named_modules())
    targets = plan_adapter(spec, edits, meta)
    if not targets:
        raise CheckpointError("the plan edits no tensor, so the adapter would be empty; check --layers")
    lora_bias = choose_bias(targets, modules, adapter_bias)
    rank = max(int(t.q.shape[0]) for t in targets.values())
    approximate = []
    if spec.postnorm and plan.layers:
        approximate.append(
            f"{spec.model_type} has post-norm blocks ({', '.join(spec.postnorm.values())}) after the writers: "
            f"the {postnorm} fold (and this adapter, which equals it) is approximate; run aru verify to see it"
        )
    order = sorted(targets.values(), key=lambda t: min(_pos(n, where, headers) for n in _names(t)))
    shape_of = lambda n: headers[where[n]].tensors[n].shape  # noqa: E731
    infos = _layout(order, shape_of, adapter_dtype=ADAPTER_DTYPES[adapter_dtype], rank=rank, d=hidden, dtypes=dtypes)
    cfg = adapter_config(targets, rank=rank, lora_bias=lora_bias, base=repo_id or str(folder), revision=revision)
    cross_checked = _cross_check(folder, cfg, infos)

    from aru.outputs import Output

    claim = Output(output, "edit", force=force, inputs=[folder, directions_path])  # lock, then a fresh staging
    tmp = claim.staging
    try:
        _write_adapter(
            tmp / ADAPTER_WEIGHTS, order, infos, _reader(folder, where), strength=plan.strength,
            compute=COMPUTE_DTYPES[dtype], rank=rank,
        )  # fmt: skip
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        untied = tied and plan.embed is not None
        settings = {
            **plan.to_dict(),
            "layers": None if layers is None else sorted(plan.layers),
            "k": k,
            "keep_tied": keep_tied,
            "postnorm": postnorm,
            "dtype": dtype,
            "untied": untied,
            "exact": not approximate,
            "approximate": approximate,
            "model_type": spec.model_type,
            "format": "peft",
            "adapter_bias": adapter_bias,
            "lora_bias": lora_bias,
            "rank": rank,
            "adapter_dtype": adapter_dtype,
        }
        record = {
            "input": {
                "path": None if repo_id else str(folder),
                "repo_id": repo_id,
                "revision": revision,
                "files": {s: file_sha256(folder / s) for s in shards},
            },
            "directions": record_directions(tmp, directions, directions_path),
            "settings": settings,
            "edited_tensors": [n for t in order for n in _names(t)],
            "adapter": {
                "targets": cfg["target_modules"],
                "target_parameters": cfg["target_parameters"],
                "modules_to_save": cfg["modules_to_save"],
                "keys": [i.name for i in infos],
                "peft_cross_checked": cross_checked,
            },
        }
        if extra_provenance:
            record["extra"] = dict(extra_provenance)
        write_provenance(tmp, record, files=hash_folder(tmp))
        claim.commit()  # re-checks the target, then renames (an earlier aru output is swapped out)
    finally:
        claim.close()
    for msg in approximate:
        warnings.warn(msg, AruWarning, stacklevel=2)
    from aru.provenance import read_provenance

    return AdapterResult(
        output=output,
        targets=sorted(targets),
        modules_to_save=cfg["modules_to_save"] or [],
        rank=rank,
        lora_bias=lora_bias,
        untied=untied,
        approximate=approximate,
        seconds=time.perf_counter() - start,
        bytes_written=sum(p.stat().st_size for p in output.iterdir() if p.is_file()),
        checkpoint_bytes=sum((folder / s).stat().st_size for s in shards),
        provenance=read_provenance(output),
        has_embedding=any(t.kind == "embedding" and not t.replace for t in targets.values()),
    )


def _cross_check(folder: Path, cfg: dict, infos: list[TensorInfo]) -> str | None:
    """The PEFT version the adapter's keys and shapes were checked against (:func:`aru.lora_peft.cross_check`),
    or None when PEFT is not installed (the check is skipped)."""
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        return None
    from aru.lora_peft import cross_check

    return cross_check(meta_model(folder), cfg, {i.name: tuple(i.shape) for i in infos})


def _names(t: _Target) -> list[str]:
    return [n for n in (t.weight, t.bias) if n] + [t.experts[e] for e in sorted(t.experts)]


def _pos(name: str, where: dict[str, str], headers: dict) -> tuple[str, int]:
    return where[name], headers[where[name]].tensors[name].begin
