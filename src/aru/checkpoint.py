"""The streaming editor: fold a direction basis into a safetensors checkpoint, shard by shard.

For each input shard, one sequential pass: non-writer tensors are copied as raw bytes (in 64 MiB chunks),
writer tensors are read, folded in float32 (:mod:`aru.fold`), cast back and written in place, and both the
input and the output are hashed on the way. The output shard has the same name, header and byte layout
(plus ``lm_head.weight`` at its end when tied embeddings are untied), so peak memory is a small multiple of
the largest writer tensor, not of the checkpoint.

Everything is written into a temporary folder beside the output and renamed when complete: a failed run
leaves no partial output, and the input is only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import re
import shutil
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aru import inputcheck
from aru.arch import LAYOUT_AXIS, ArchSpec, get_spec
from aru.directions import Directions, load_directions
from aru.errors import AruWarning, CheckpointError
from aru.fold import fold_tensor, oblique_basis
from aru.model_edit import POSTNORM_MODES, EditPlan, make_plan
from aru.outputs import VCS_DIRS, Output, check_inputs, check_target, run_leftovers
from aru.provenance import (
    PROVENANCE_FILE,
    UNHASHED,
    hash_folder,
    record_directions,
    write_provenance,
)
from aru.safetensors_io import Header, TensorInfo, encode_header, read_header, tensor_from_bytes, tensor_to_bytes

log = logging.getLogger("aru")
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CHUNK = 16 << 20
# other weight formats are not copied: they would hold the unedited weights next to the edited ones
FOREIGN_WEIGHTS = re.compile(r".*\.(bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|safetensors)$")
SKIP_DIRS = {".cache", ".huggingface", *VCS_DIRS}
COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.tiktoken", "*.md"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class EditResult:
    """What :func:`edit_checkpoint` did."""

    output: Path
    edited: list[str]
    untied: bool
    approximate: list[str]
    seconds: float
    bytes_written: int
    skipped_files: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not self.approximate

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "edited_tensors": len(self.edited),
            "untied": self.untied,
            "exact": self.exact,
            "approximate": self.approximate,
            "seconds": round(self.seconds, 3),
            "bytes_written": self.bytes_written,
            "skipped_files": self.skipped_files,
        }


def resolve_model(model: str | Path, *, revision: str | None = None) -> tuple[Path, str | None, str | None]:
    """(local folder, Hub repo id or None, revision or None) for a local folder or a Hub model id.

    Hub ids are fetched with ``huggingface_hub.snapshot_download`` (safetensors, configs, tokenizer files).
    """
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"model {str(model)!r} is a file; pass the checkpoint's folder")
        if revision is not None:
            raise CheckpointError(
                f"revision {revision!r} applies to Hub ids, but {str(model)!r} is a local folder (it would be recorded "
                "as the base revision without being checked); drop --revision, or pass the Hub id"
            )
        return path.resolve(), None, revision
    if not REPO_ID.match(str(model)):
        raise CheckpointError(f"model {str(model)!r} is neither an existing folder nor a Hub id like 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(str(model), revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, gated, missing: huggingface_hub raises many types
        raise CheckpointError(
            f"could not download {str(model)!r} from the Hub ({type(exc).__name__}: {exc}); "
            "check the id, your network and HF_TOKEN, or pass a local folder"
        ) from exc
    return local, str(model), revision or local.name


def list_shards(folder: Path) -> tuple[list[str], dict | None]:
    """The shard file names of a checkpoint folder and its parsed index (None for a single file)."""
    index_path = folder / INDEX
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            weight_map: dict[str, str] = index["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{str(index_path)!r} is not a valid safetensors index ({exc})") from exc
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(
                f"{INDEX} in {str(folder)!r} names shards that do not exist: {missing}; re-download the checkpoint"
            )
        return shards, index
    if (folder / SINGLE).is_file():
        return [SINGLE], None
    bins = sorted(p.name for p in folder.glob("*.bin"))
    hint = (
        f" It has {bins}: convert it with transformers (from_pretrained, then save_pretrained) first." if bins else ""
    )
    raise CheckpointError(f"{str(folder)!r} has no {SINGLE} or {INDEX}: aru edits safetensors checkpoints.{hint}")


HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def load_config(folder: Path, *, check_arch: bool = True) -> tuple[dict, str, int, int]:
    """(raw config.json, model_type, hidden size, number of decoder layers) of a checkpoint folder.

    Read as JSON (no transformers import): the editor needs only these facts; tying is read from the
    shards themselves (a tied checkpoint has no output-head tensor)."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{str(folder)!r} has no config.json: it is not a transformers checkpoint")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({exc})") from exc
    model_type = raw.get("model_type", "<missing>")
    if check_arch:
        get_spec(model_type, raw)  # unsupported architectures fail here, with the reason
    if raw.get("quantization_config"):
        raise CheckpointError(
            f"{str(folder)!r} is quantized ({raw['quantization_config'].get('quant_method', '?')}); "
            "aru edits float checkpoints: dequantize it first"
        )
    inputcheck.check_config_numbers(raw, path)
    hidden = next((raw[k] for k in HIDDEN_KEYS if isinstance(raw.get(k), int)), None)
    layers = next((raw[k] for k in LAYER_KEYS if isinstance(raw.get(k), int)), None)
    if hidden is None or layers is None:
        raise CheckpointError(f"{str(path)!r} has no hidden size {HIDDEN_KEYS} or layer count {LAYER_KEYS}")
    return raw, model_type, hidden, layers


def _check_output(output: Path, inputs: list, force: bool) -> None:
    """The output policy of :mod:`aru.outputs`, checked early (it is checked again under the lock)."""
    check_inputs(output, inputs)
    check_target(output, "edit", force=force)


@dataclass
class _Edit:
    writer_layout: str
    q: torch.Tensor


def _plan_tensors(
    spec: ArchSpec, headers: dict[str, Header], plan: EditPlan, folder: Path, postnorm: str
) -> tuple[dict[str, _Edit], str | None]:
    """name → edit for every writer tensor the plan touches, and the token embedding's name."""
    from safetensors import safe_open

    where = {name: shard for shard, h in headers.items() for name in h.tensors}
    edits: dict[str, _Edit] = {}
    embed_name = None
    seen_layers: set[int] = set()
    for name in where:
        hit = spec.match(name)
        if hit is None:
            continue
        writer, layer, block = hit
        if writer.role == "embed":
            embed_name = name
        q = plan.basis_for(writer.role, layer)
        if q is None:
            continue
        norm = spec.postnorm_name(writer, block)
        if norm and postnorm == "oblique":
            if norm not in where:
                raise CheckpointError(f"post-norm weight {norm!r} (after {name!r}) is not in the checkpoint")
            with safe_open(folder / where[norm], framework="pt") as f:
                q = oblique_basis(q, f.get_tensor(norm).float() + spec.norm_offset)
        edits[name] = _Edit(writer.layout, q)
        if layer is not None:
            seen_layers.add(layer)
    missing = sorted(set(plan.layers) - seen_layers)
    if missing:
        raise CheckpointError(
            f"no residual-stream writers found for decoder layers {missing} in the checkpoint "
            f"(model_type {spec.model_type!r}); the checkpoint does not match its config"
        )
    if plan.embed is not None and embed_name is None:
        raise CheckpointError(f"no token embedding found in the checkpoint (model_type {spec.model_type!r})")
    return edits, embed_name


class _BackgroundHash:
    """sha256 updated on a worker thread (hashlib releases the GIL), so hashing overlaps reading and writing.

    At most ``depth`` blocks wait in the queue, which bounds the memory they hold."""

    def __init__(self, depth: int = 3) -> None:
        self._h = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: deque = deque()
        self._depth = depth

    def update(self, data) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._h.update, data))

    def hexdigest(self) -> str:
        while self._pending:
            self._pending.popleft().result()
        self._pool.shutdown()
        return self._h.hexdigest()


def _copy_range(fi, fo, n: int, h_in, h_out, bar) -> None:
    while n > 0:
        block = fi.read(min(CHUNK, n))
        if not block:
            raise CheckpointError(f"{fi.name!r} ended early: the shard is truncated")
        if h_in is not None:
            h_in.update(block)
        h_out.update(block)
        fo.write(block)
        n -= len(block)
        bar.update(len(block))


def _read_blocks(fi, t: TensorInfo, layout: str, d: int, h_in):
    """The tensor ``t`` read from ``fi`` (positioned at its start): whole, or in blocks of rows when its residual
    axis is the last one (embeddings, Conv1D, biases), so the largest writer (the embedding) never sits in
    memory whole."""
    itemsize = t.nbytes // max(1, math.prod(t.shape))
    if LAYOUT_AXIS[layout] == -1 and t.nbytes:
        rows = t.nbytes // (itemsize * d)
        step = max(1, CHUNK // (itemsize * d))
        shapes = [(min(step, rows - i), d) for i in range(0, rows, step)]
    else:
        shapes = [t.shape]
    for shape in shapes:
        buf = bytearray(math.prod(shape) * itemsize)
        if fi.readinto(buf) != len(buf):
            raise CheckpointError(f"{fi.name!r} ended inside tensor {t.name!r}: the shard is truncated")
        h_in.update(buf)
        yield tensor_from_bytes(buf, TensorInfo(t.name, t.dtype, tuple(shape), 0, len(buf)))


def _write_shard(
    header: Header,
    dst: Path,
    edits: dict[str, _Edit],
    *,
    strength: float,
    compute_dtype: torch.dtype,
    untie_name: str | None,
    lm_head: str,
    keep_tied: bool,
    bar,
) -> tuple[str, str, list[str], dict]:
    """Stream one shard; returns (input sha256, output sha256, edited names, notes)."""
    h_in, h_out = _BackgroundHash(), _BackgroundHash()
    ordered = sorted(header.tensors.values(), key=lambda t: t.begin)
    extra: TensorInfo | None = None
    if untie_name is not None:
        e = header.tensors[untie_name]
        extra = TensorInfo(lm_head, e.dtype, e.shape, header.data_size, header.data_size + e.nbytes)
    edited, notes = [], {}
    sq_change = sq_norm = 0.0
    with open(header.path, "rb") as fi, open(dst, "wb") as fo:
        raw_header = fi.read(header.data_start)
        h_in.update(raw_header)
        out_header = raw_header if extra is None else encode_header([*ordered, extra], header.metadata)
        fo.write(out_header)
        h_out.update(out_header)
        bar.update(header.data_start)
        pos = 0
        for t in ordered:
            if t.name not in edits:
                continue
            _copy_range(fi, fo, t.begin - pos, h_in, h_out, bar)
            edit = edits[t.name]
            kw = {"strength": strength, "compute_dtype": compute_dtype, "name": t.name}
            for w in _read_blocks(fi, t, edit.writer_layout, edit.q.shape[-1], h_in):
                layout = "embed" if LAYOUT_AXIS[edit.writer_layout] == -1 else edit.writer_layout
                new = fold_tensor(w, edit.q, layout, **kw)
                if edit.writer_layout == "embed" and keep_tied:
                    sq_change += float((new.float() - w.float()).pow(2).sum())
                    sq_norm += float(w.float().pow(2).sum())
                out = tensor_to_bytes(new)
                fo.write(out)
                h_out.update(out)
                bar.update(len(out))
            edited.append(t.name)
            pos = t.end
        _copy_range(fi, fo, header.data_size - pos, h_in, h_out, bar)
        if extra is not None:  # the untied head: the original embedding's bytes, read again from the input
            e = header.tensors[untie_name]
            fi.seek(header.data_start + e.begin)
            _copy_range(fi, fo, e.nbytes, None, h_out, bar)
    if sq_norm:
        notes["embed_relative_change"] = (sq_change / sq_norm) ** 0.5
    return h_in.hexdigest(), h_out.hexdigest(), edited, notes


def _copy_other_files(folder: Path, tmp: Path, shards: list[str]) -> list[str]:
    """Copy config, tokenizer, generation config, chat template, ...; returns the weight files skipped."""
    skipped = []
    leftovers = run_leftovers(folder)  # an earlier aru output's reports and card describe that output, not this one
    for src in sorted(folder.rglob("*")):
        rel = src.relative_to(folder)
        if any(part in SKIP_DIRS for part in rel.parts) or not src.is_file():
            continue
        name = rel.as_posix()
        if name in shards or name in (INDEX, PROVENANCE_FILE) or name in leftovers:
            continue
        if FOREIGN_WEIGHTS.fullmatch(src.name):
            skipped.append(name)
            continue
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / rel)
    return skipped


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="aru edit", disable=not enabled, file=sys.stderr)


@dataclass
class PreparedEdit:
    """What every writer of an edit (the checkpoint editor, the adapter export) knows before writing: the resolved
    input, the loaded directions, the architecture (table or derived and proven), the plan and the tensor edits."""

    folder: Path
    repo_id: str | None
    revision: str | None
    output: Path
    directions: Directions
    directions_path: Path | None
    raw_config: dict
    model_type: str
    hidden: int
    num_layers: int
    spec: ArchSpec
    arch_record: dict
    shards: list[str]
    index: dict | None
    headers: dict
    plan: EditPlan
    edits: dict
    embed_name: str | None


def prepare_edit(
    model: str | Path,
    directions: str | Path | Directions,
    output: str | Path,
    *,
    layers=None,
    source_layer=None,
    per_layer: bool = False,
    k: int | None = None,
    strength: float = 1.0,
    postnorm: str = "orthogonal",
    force: bool = False,
    revision: str | None = None,
    spec: ArchSpec | None = None,
) -> PreparedEdit:
    """The checks and planning shared by :func:`edit_checkpoint` and :func:`aru.lora.export_adapter`, all done
    before any output is written: input and output resolved (output policy), directions loaded and checked against
    the model, architecture resolved, plan made, tensor edits planned, non-writers checked for non-finite values."""
    folder, repo_id, revision = resolve_model(model, revision=revision)
    output = Path(output).expanduser().resolve()
    directions_path = None
    if not isinstance(directions, Directions):
        directions_path = Path(directions).expanduser().resolve()
    _check_output(output, [folder, directions_path], force)
    if directions_path is not None:
        directions = load_directions(directions_path)
    raw_config, model_type, hidden, num_layers = load_config(folder, check_arch=False)
    if spec is None:
        from aru.arch.derive import resolve_spec

        spec, arch_record = resolve_spec(model_type, raw_config)
    else:
        arch_record = {"source": "given", "model_type": spec.model_type}
    shards, index = list_shards(folder)
    headers = {s: read_header(folder / s) for s in shards}
    if directions.hidden_size != hidden:
        inputcheck.blame_hidden_size(directions, model=str(model), hidden=hidden, headers=headers, spec=spec)
    inputcheck.check_directions_for_model(directions, model=str(model), model_type=model_type, num_layers=num_layers)
    plan = make_plan(
        directions, num_layers, layers=layers, source_layer=source_layer, strength=strength, per_layer=per_layer, k=k
    )
    edits, embed_name = _plan_tensors(spec, headers, plan, folder, postnorm)
    inputcheck.check_finite(folder, headers, skip=set(edits))
    return PreparedEdit(
        folder, repo_id, revision, output, directions, directions_path, raw_config, model_type, hidden, num_layers,
        spec, arch_record, shards, index, headers, plan, edits, embed_name,
    )  # fmt: skip


def edit_checkpoint(
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
    force: bool = False,
    revision: str | None = None,
    progress: bool = True,
    extra_provenance: dict | None = None,
    spec: ArchSpec | None = None,
) -> EditResult:
    """Write ``output``: the checkpoint ``model`` (folder or Hub id) with the directions folded into its writers.

    See :func:`aru.model_edit.make_plan` for ``layers``, ``source_layer``, ``per_layer``, ``k`` and
    ``strength``; :func:`aru.model_edit.fold_into_model` for ``keep_tied`` and ``postnorm``. ``dtype`` is
    the precision of the fold arithmetic (``float32`` or ``float64``); every tensor keeps its dtype.
    ``spec`` overrides the architecture knowledge (the derivation's proof uses it); by default it is the
    table's, or derived and proven for a model_type outside the table (:mod:`aru.arch.derive`), before any
    output is written.
    """
    start = time.perf_counter()
    if postnorm not in POSTNORM_MODES:
        raise ValueError(f"postnorm {postnorm!r} is not one of {POSTNORM_MODES}")
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(COMPUTE_DTYPES)} (the fold's arithmetic precision)")
    prep = prepare_edit(
        model, directions, output, layers=layers, source_layer=source_layer, per_layer=per_layer, k=k,
        strength=strength, postnorm=postnorm, force=force, revision=revision, spec=spec,
    )  # fmt: skip
    folder, repo_id, revision, output = prep.folder, prep.repo_id, prep.revision, prep.output
    directions, directions_path, spec, arch_record = prep.directions, prep.directions_path, prep.spec, prep.arch_record
    raw_config, hidden, plan = prep.raw_config, prep.hidden, prep.plan
    shards, index, headers, edits, embed_name = prep.shards, prep.index, prep.headers, prep.edits, prep.embed_name
    all_names = {n for h in headers.values() for n in h.tensors}
    if embed_name is not None:
        d_embed = next(h.tensors[embed_name].shape[-1] for h in headers.values() if embed_name in h.tensors)
        if d_embed != hidden:
            raise CheckpointError(f"{embed_name} has width {d_embed} but config.json says hidden size {hidden}")
    tied = spec.lm_head not in all_names  # the output head reuses the embedding
    untie = tied and plan.embed is not None and not keep_tied
    # a config that says "tied" would make transformers re-tie the head to the edited embedding
    fix_config = plan.embed is not None and not keep_tied and (untie or raw_config.get("tie_word_embeddings") is True)
    embed_shard = next((s for s, h in headers.items() if embed_name in h.tensors), None)

    approximate = []
    if spec.postnorm and plan.layers:
        approximate.append(
            f"{spec.model_type} has post-norm blocks ({', '.join(spec.postnorm.values())}) after the writers: "
            f"the {postnorm} fold is approximate; run aru verify to see the deviation"
        )
    if tied and plan.embed is not None and keep_tied:
        approximate.append("keep_tied: the shared embedding matrix also projects the output head")

    total = sum(h.data_start + h.data_size for h in headers.values())
    needed = total + (headers[embed_shard].tensors[embed_name].nbytes if untie else 0)
    output.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(output.parent).free
    if free < needed + (16 << 20):
        raise CheckpointError(
            f"not enough disk space in {str(output.parent)!r}: the edit needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free; free some space or choose another output"
        )

    claim = Output(output, "edit", force=force, inputs=[folder, directions_path])  # lock, then a fresh staging
    tmp = claim.staging
    compute = COMPUTE_DTYPES[dtype]
    in_hashes, out_hashes, edited, notes = {}, {}, [], {}
    try:
        with _progress(total, progress) as bar:
            for shard in shards:
                (tmp / shard).parent.mkdir(parents=True, exist_ok=True)
                in_sha, out_sha, names, shard_notes = _write_shard(
                    headers[shard],
                    tmp / shard,
                    edits,
                    strength=plan.strength,
                    compute_dtype=compute,
                    untie_name=embed_name if untie and shard == embed_shard else None,
                    lm_head=spec.lm_head,
                    keep_tied=tied and keep_tied,
                    bar=bar,
                )
                in_hashes[shard], out_hashes[shard] = in_sha, out_sha
                edited += names
                notes.update(shard_notes)
        if "embed_relative_change" in notes and tied and keep_tied:
            approximate[-1] += f" (relative change of the head's weights: {notes['embed_relative_change']:.3g})"
        skipped = _copy_other_files(folder, tmp, shards)
        if index is not None:
            new_index = json.loads(json.dumps(index))
            if untie:
                new_index["weight_map"][spec.lm_head] = embed_shard
                meta = new_index.setdefault("metadata", {})
                if "total_size" in meta:
                    meta["total_size"] = int(meta["total_size"]) + headers[embed_shard].tensors[embed_name].nbytes
            (tmp / INDEX).write_text(json.dumps(new_index, indent=2) + "\n")
        if fix_config:
            cfg = dict(raw_config)
            cfg["tie_word_embeddings"] = False
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        # shards were hashed while they were written; hash the rest (config, tokenizer, index, ...)
        directions_entry = record_directions(tmp, directions, directions_path)
        files = {**hash_folder(tmp, skip=UNHASHED | set(out_hashes)), **out_hashes}
        settings = {
            **plan.to_dict(),
            "layers": None if layers is None else sorted(plan.layers),
            "k": k,
            "keep_tied": keep_tied,
            "postnorm": postnorm,
            "dtype": dtype,
            "untied": untie,
            "exact": not approximate,
            "approximate": approximate,
            "model_type": spec.model_type,
            "arch": arch_record,
        }
        record = {
            "input": {
                "path": None if repo_id else str(folder),
                "repo_id": repo_id,
                "revision": revision,
                "files": in_hashes,
            },
            "directions": directions_entry,
            "settings": settings,
            "edited_tensors": edited,
        }
        if extra_provenance:
            record["extra"] = dict(extra_provenance)
        write_provenance(tmp, record, files=files)
        claim.commit()  # re-checks the target, then renames (an earlier aru output is swapped out)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(
                f"the disk holding {str(output.parent)!r} ran out of space while writing; nothing was written. "
                "Free some space or choose another output"
            ) from exc
        raise
    finally:
        claim.close()
    for msg in approximate:
        warnings.warn(msg, AruWarning, stacklevel=2)
    if untie:
        log.info("untied the embeddings: %s keeps the original matrix, tie_word_embeddings = false", spec.lm_head)
    from aru.provenance import read_provenance

    return EditResult(
        output=output,
        edited=edited,
        untied=untie,
        approximate=approximate,
        seconds=time.perf_counter() - start,
        bytes_written=sum((output / s).stat().st_size for s in shards),
        skipped_files=skipped,
        provenance=read_provenance(output),
    )
