"""What ``aru push`` checks before publishing: the folder's files, then the model itself.

``aru.json``'s hashes prove *integrity* (the files are the ones recorded), not *authenticity*: anyone can write
new hashes into it. So before uploading, push re-derives the edit from the base model, streaming, shard by shard:

- every tensor that is not a residual-stream writer is byte-equal to the base's,
- every writer equals the fold of the base's tensor with the recorded directions and settings (the plan comes
  from :mod:`aru.checkpoint` and :mod:`aru.model_edit`, the fold from :mod:`aru.fold`: nothing is
  re-implemented), within a few units in the last place of the tensor's dtype,
- an untied output head equals the base's embedding; config, tokenizer and other files equal the base's,
- the base is the recorded local folder or the recorded Hub id at the recorded revision, and its shards are the
  recorded input (sha256); the directions file is the recorded one (sha256).

The file set is checked first: symbolic links that leave the folder are refused, version-control folders
(``.git``, ``.hg``, ``.svn``) are ignored by the check and by the upload alike, and exactly the checked files
are uploaded.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aru.errors import ProvenanceError
from aru.outputs import RUN_LEFTOVERS, VCS_DIRS
from aru.provenance import DIRECTIONS_FILE, PROVENANCE_FILE, file_sha256, read_provenance, recorded_directions

CARD_FILE = "README.md"
#: ulps of the tensor's dtype a re-derived writer may differ by (BLAS kernels differ between machines)
ULPS = 4


RECORDED_NOT_CHECKED = (
    "_Recorded, not checked: this {what} was recorded in aru.json when the output was made; `aru push` re-derives "
    "the weights, not these numbers (re-run `{check}` to check them)._"
)


class ForgedOutputError(ProvenanceError):
    """The folder's weights are not the recorded edit of the recorded base model."""


@dataclass
class ModelCheck:
    """The result of re-deriving an edit: what was compared and how."""

    base: str
    base_revision: str | None
    shards: int = 0
    tensors: int = 0
    writers: int = 0
    writers_bitwise: int = 0
    max_writer_ulps: float = 0.0
    files: int = 0
    skipped: bool = False  # --no-base-check
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "problems"}


# ---------------------------------------------------------------------------------------------------- the files


def folder_files(folder: str | Path) -> list[str]:
    """Every file of ``folder`` (relative posix paths) that push hashes and uploads; VCS folders excluded.

    Raises :class:`ProvenanceError` for a symbolic link whose target lies outside the folder."""
    folder = Path(folder).resolve()
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in VCS_DIRS)
        for name in [*dirs, *files]:
            p = Path(root) / name
            if p.is_symlink():
                target = p.resolve()
                if folder != target and folder not in target.parents:
                    raise ProvenanceError(
                        f"{str(p)!r} is a symbolic link to {str(target)!r}, outside the folder; aru push publishes "
                        "only the folder's own files: replace the link with the file or remove it"
                    )
        for name in sorted(files):
            p = Path(root) / name
            if p.is_file():
                out.append(p.relative_to(folder).as_posix())
    return sorted(out)


def check_files(folder: str | Path) -> dict[str, Any]:
    """:func:`aru.provenance.check_provenance` over the file set push uploads (:func:`folder_files`); returns
    the record. The card (``README.md``) is written by push and is the only file that may be unrecorded."""
    folder = Path(folder)
    data = read_provenance(folder)
    recorded: dict[str, str] = data["files"]
    actual = folder_files(folder)
    problems = [f"missing file {n}" for n in recorded if n not in actual]
    for name in actual:
        if name in (PROVENANCE_FILE, CARD_FILE):
            continue
        if name not in recorded:
            problems.append(f"unrecorded file {name}")
        elif file_sha256(folder / name) != recorded[name]:
            problems.append(
                f"{name} changed (sha256 {file_sha256(folder / name)[:12]} != recorded {recorded[name][:12]})"
            )
    if problems:
        raise ProvenanceError(
            f"{str(folder)!r} does not match its {PROVENANCE_FILE}: "
            + "; ".join(problems)
            + ". Re-create the output with aru edit rather than publishing a modified or partial folder."
        )
    return data


# ---------------------------------------------------------------------------------------------------- the model


def _resolve_base(record: dict, base: str | Path | None) -> tuple[Path, str, str | None]:
    from aru.checkpoint import resolve_model

    inp = record.get("input") or {}
    if base is not None:
        folder, _, _ = resolve_model(base)
        return folder, str(base), None
    if inp.get("path") and Path(inp["path"]).is_dir():
        return Path(inp["path"]), str(inp["path"]), None
    if inp.get("repo_id"):
        folder, repo, rev = resolve_model(inp["repo_id"], revision=inp.get("revision"))
        return folder, str(repo), rev
    where = inp.get("path") or "nowhere"
    raise ProvenanceError(
        f"the base model recorded in aru.json ({where!r}) is not available, so push cannot check that the weights "
        "are its edit: pass --base PATH (the model that was edited), or --no-base-check to publish unchecked "
        "(the card then says so)"
    )


def _resolve_directions(record: dict, folder: Path, directions: str | Path | None) -> Path:
    rec = record.get("directions") or {}
    candidates = (
        [directions] if directions is not None else [recorded_directions(folder, record), folder / DIRECTIONS_FILE]
    )
    path = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    if path is None:
        raise ProvenanceError(
            f"the directions file recorded in aru.json ({rec.get('path')!r}) does not exist, so push cannot re-derive "
            "the edit: pass --directions FILE, or --no-base-check to publish unchecked (the card then says so)"
        )
    sha = file_sha256(path)
    if rec.get("sha256") and sha != rec["sha256"]:
        raise ForgedOutputError(
            f"the directions file {str(path)!r} (sha256 {sha[:12]}) is not the one recorded in aru.json "
            f"({str(rec['sha256'])[:12]}); pass the directions the output was edited with (--directions FILE)"
        )
    return path


def _tensor_map(folder: Path) -> tuple[dict[str, tuple[str, Any]], list[str]]:
    """name → (shard, TensorInfo), and the shard names."""
    from aru.checkpoint import list_shards
    from aru.safetensors_io import read_header

    shards, _ = list_shards(folder)
    names = {}
    for s in shards:
        for name, info in read_header(folder / s).tensors.items():
            names[name] = (s, info)
    return names, shards


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _ulps(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| in units of the dtype's eps times the tensor's scale (0 when bit-identical)."""
    if torch.equal(a, b):
        return 0.0
    diff = (a.double() - b.double()).abs().max().item()
    scale = max(b.double().abs().max().item(), 1e-30)
    return diff / (torch.finfo(b.dtype).eps * scale)


def _refold(w: torch.Tensor, edit, strength: float, compute: torch.dtype, name: str) -> torch.Tensor:
    """The edit's fold of the base tensor ``w``, in the same row blocks as :func:`aru.checkpoint._read_blocks`."""
    from aru.arch import LAYOUT_AXIS
    from aru.checkpoint import CHUNK
    from aru.fold import fold_tensor

    kw = {"strength": strength, "compute_dtype": compute, "name": name}
    if LAYOUT_AXIS[edit.writer_layout] != -1 or w.numel() == 0:
        return fold_tensor(w, edit.q, edit.writer_layout, **kw)
    d = edit.q.shape[-1]
    flat = w.reshape(-1, d)
    step = max(1, CHUNK // (w.element_size() * d))
    blocks = [fold_tensor(flat[i : i + step], edit.q, "embed", **kw) for i in range(0, flat.shape[0], step)]
    return torch.cat(blocks).reshape(w.shape)


def _compare_files(folder: Path, base: Path, record: dict, shards: list[str], check: ModelCheck) -> None:
    """Every non-weight file equals the base's (config.json up to the untie), or is aru's own record."""
    from aru.checkpoint import INDEX

    settings = record.get("settings") or {}
    own = {PROVENANCE_FILE, CARD_FILE, INDEX, *RUN_LEFTOVERS, *shards}
    for name in record["files"]:
        if name in own:
            continue
        check.files += 1
        mine, theirs = folder / name, base / name
        if not theirs.is_file():
            check.problems.append(f"{name} is not in the base model and aru does not write it")
        elif name == "config.json":
            a, b = json.loads(mine.read_text()), json.loads(theirs.read_text())
            if settings.get("edit_embeddings") or settings.get("untied"):
                a.pop("tie_word_embeddings", None)
                b.pop("tie_word_embeddings", None)
            if a != b:
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                check.problems.append(f"config.json differs from the base's in {keys}")
        elif file_sha256(mine) != file_sha256(theirs):
            check.problems.append(f"{name} differs from the base model's")


def check_model(
    folder: str | Path, record: dict, *, base: str | Path | None = None, directions: str | Path | None = None
) -> ModelCheck:
    """Re-derive the edit recorded in ``record`` from the base model and compare it with ``folder``'s weights;
    raise :class:`ForgedOutputError` naming every tensor or file that is not the recorded edit."""
    import contextlib

    from safetensors import safe_open

    from aru.arch import get_spec
    from aru.checkpoint import COMPUTE_DTYPES, _plan_tensors, load_config
    from aru.directions import load_directions
    from aru.model_edit import make_plan
    from aru.safetensors_io import read_header

    folder = Path(folder)
    settings = record.get("settings") or {}
    base_folder, base_name, revision = _resolve_base(record, base)
    dpath = _resolve_directions(record, folder, directions)
    check = ModelCheck(base=base_name, base_revision=revision)
    recorded_in = (record.get("input") or {}).get("files") or {}
    _, model_type, _, num_layers = load_config(base_folder)
    spec = get_spec(model_type)
    plan = make_plan(
        load_directions(dpath),
        num_layers,
        layers=settings.get("layers"),
        source_layer=settings.get("source_layer"),
        strength=float(settings.get("strength", 1.0)),
        per_layer=bool(settings.get("per_layer", False)),
        k=settings.get("k") if isinstance(settings.get("k"), int) else None,
    )
    base_names, base_shards = _tensor_map(base_folder)
    for s in base_shards:
        if s in recorded_in and file_sha256(base_folder / s) != recorded_in[s]:
            raise ForgedOutputError(
                f"the base {base_name!r} is not the model that was edited: its {s} has sha256 "
                f"{file_sha256(base_folder / s)[:12]}, aru.json records {recorded_in[s][:12]}; pass --base PATH"
            )
    headers = {s: read_header(base_folder / s) for s in base_shards}
    edits, embed_name = _plan_tensors(spec, headers, plan, base_folder, settings.get("postnorm") or "orthogonal")
    mine, shards = _tensor_map(folder)
    untied = settings.get("untied") and spec.lm_head in mine and spec.lm_head not in base_names
    expected = set(base_names) | ({spec.lm_head} if untied else set())
    if set(mine) != expected:
        extra, missing = sorted(set(mine) - expected), sorted(expected - set(mine))
        check.problems.append(f"tensor names differ from the base's (extra {extra[:5]}, missing {missing[:5]})")
    compute = COMPUTE_DTYPES.get(settings.get("dtype") or "float32", torch.float32)
    head_source = embed_name if untied else None  # an untied head holds the base's embedding
    check.shards = len(shards)
    with contextlib.ExitStack() as stack:  # memory-mapped: one tensor pair in memory at a time
        opened = {s: stack.enter_context(safe_open(str(base_folder / s), framework="pt")) for s in base_shards}
        for shard in shards:
            _compare_shard(folder / shard, opened, base_names, edits, head_source, spec.lm_head, plan.strength,
                           compute, check)  # fmt: skip
    _compare_files(folder, base_folder, record, shards, check)
    if dpath != folder / DIRECTIONS_FILE and (folder / DIRECTIONS_FILE).is_file():
        if file_sha256(folder / DIRECTIONS_FILE) != file_sha256(dpath):
            check.problems.append(f"{DIRECTIONS_FILE} is not the directions file the edit used")
    if check.problems:
        shown = "; ".join(check.problems[:6]) + (
            f"; and {len(check.problems) - 6} more" if len(check.problems) > 6 else ""
        )
        raise ForgedOutputError(
            f"{str(folder)!r} is not the edit that its aru.json records of {base_name!r}: {shown}. Its hashes match "
            "because they were rewritten; aru push publishes only outputs it can re-derive. Re-create it with aru edit"
        )
    return check


def _compare_shard(path: Path, opened, base_names, edits, embed_name, lm_head, strength, compute, check) -> None:
    """Compare every tensor of one output shard with the base's (writers: with their re-derived fold)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            source = embed_name if embed_name and name == lm_head else name
            if source not in base_names:
                continue
            w = opened[base_names[source][0]].get_tensor(source)
            got = f.get_tensor(name)
            check.tensors += 1
            if got.dtype != w.dtype or got.shape != w.shape:
                check.problems.append(
                    f"{name} is {got.dtype} {tuple(got.shape)}, the base's is {w.dtype} {tuple(w.shape)}"
                )
            elif name in edits:
                check.writers += 1
                ulps = _ulps(got, _refold(w, edits[name], strength, compute, name))
                check.writers_bitwise += ulps == 0.0
                check.max_writer_ulps = max(check.max_writer_ulps, ulps)
                if not math.isfinite(ulps) or ulps > ULPS:
                    check.problems.append(
                        f"{name} is not the fold of the base's tensor with the recorded directions "
                        f"({ulps:.3g} ulps off)"
                    )
            elif not torch.equal(_bytes(got), _bytes(w)):
                check.problems.append(f"{name} differs from the base's, and it is not a tensor the edit changes")
            del w, got


def card_lines(check: ModelCheck | None) -> list[str]:
    """Lines for the model card saying what push checked (or, loudly, that it did not); none without a check."""
    if check is None:
        return []
    if check.skipped:
        return [
            "> **WARNING: unchecked.** This folder was published with `aru push --no-base-check`: nobody checked "
            "that its weights are the recorded edit of the recorded base model. Its `aru.json` hashes prove only "
            "that the files were not changed after they were hashed, not where they came from.",
            "",
        ]
    rev = f" at revision `{check.base_revision}`" if check.base_revision else ""
    return [
        f"Checked by `aru push`: all {check.tensors} tensors were re-derived from `{check.base}`{rev} "
        f"({check.writers} residual-stream writers folded again with the recorded directions, "
        f"{check.writers_bitwise} of them bit-identical, the largest difference {check.max_writer_ulps:.2g} ulps; "
        f"every other tensor byte-equal to the base's), and {check.files} other files compared with the base's.",
        "",
    ]
