"""Provenance of an edited checkpoint: the ``aru.json`` file written into every output folder.

Schema (``aru_provenance`` = 1)::

    {
      "aru_provenance": 1,
      "aru_version": "0.1.0",
      "created": "2026-11-23T03:50:00+00:00",
      "input": {"path": "/abs/path" | null, "repo_id": "org/name" | null, "revision": "sha" | null,
                "files": {"model.safetensors": "<sha256>", ...}},
      "directions": {"path": "aru/directions.safetensors", "source": "/abs/original" | null,
                     "sha256": "<sha256 of the stored copy>", "metadata": {...}},
      "settings": {...},                 # fold settings: layers, strength, keep_tied, postnorm, dtype, ...
      "edited_tensors": ["model.layers.0.self_attn.o_proj.weight", ...],
      "files": {"model.safetensors": "<sha256>", "config.json": "<sha256>", ...},   # every output file
      "extra": {...}                     # free-form: verify numbers, evaluation, recipe (added later by run)
    }

``files`` covers every file in the output folder except ``aru.json`` itself (and ``README.md``, which the
model card step may rewrite after the edit). :func:`check_provenance` recomputes them, so a tampered or
partial output can be refused before it is published.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from aru.errors import ProvenanceError

PROVENANCE_FILE = "aru.json"
SCHEMA_VERSION = 1
UNHASHED = frozenset({PROVENANCE_FILE, "README.md"})


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file, read in 16 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_folder(folder: str | Path, skip: frozenset[str] = UNHASHED) -> dict[str, str]:
    """sha256 of every file below ``folder`` (relative posix paths), except the names in ``skip``."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in skip and ".cache" not in p.parts
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


DIRECTIONS_FILE = "aru/directions.safetensors"


def record_directions(folder: str | Path, directions, source: str | Path | None = None) -> dict[str, Any]:
    """Store the directions an edit used in ``folder/aru/directions.safetensors`` (a byte copy of ``source`` when
    the edit read a file, else :func:`aru.directions.save_directions` of the in-memory object) and return the
    ``directions`` section of ``aru.json``: the path relative to the output and the sha256 of that stored file, so
    ``aru verify OUT`` works with no arguments however the edit was made."""
    import shutil

    path = Path(folder) / DIRECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, path)
    else:
        from aru.directions import save_directions

        save_directions(directions, path)
    return {
        "path": DIRECTIONS_FILE,
        "source": None if source is None else str(source),
        "sha256": file_sha256(path),
        "metadata": dict(directions.metadata),
    }


def recorded_directions(folder: str | Path, record: dict[str, Any]) -> Path | None:
    """The directions file ``aru.json`` names: relative paths are inside ``folder``, absolute ones (older records)
    are taken as they are; ``None`` when it names none."""
    name = (record.get("directions") or {}).get("path")
    if name is None:
        return None
    path = Path(name)
    return path if path.is_absolute() else Path(folder) / path


def write_provenance(folder: str | Path, record: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    """Write ``aru.json`` into ``folder``: ``record`` plus schema/version/time and the output file hashes."""
    from aru import __version__

    folder = Path(folder)
    data = {"aru_provenance": SCHEMA_VERSION, "aru_version": __version__, "created": now_iso()}
    data.update(record)
    data["files"] = hash_folder(folder) if files is None else files
    path = folder / PROVENANCE_FILE
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def read_provenance(folder: str | Path) -> dict[str, Any]:
    """The parsed ``aru.json`` of ``folder``; :class:`ProvenanceError` if it is missing or malformed."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        raise ProvenanceError(
            f"{str(folder)!r} has no {PROVENANCE_FILE}: it is not an aru output. Create one with: aru edit MODEL ..."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProvenanceError(f"{str(path)!r} is not valid JSON ({exc}); re-run aru edit") from exc
    if data.get("aru_provenance") != SCHEMA_VERSION or not isinstance(data.get("files"), dict):
        raise ProvenanceError(f"{str(path)!r} is not an aru provenance file (schema {data.get('aru_provenance')!r})")
    return data


def rewrite_provenance(folder: str | Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write an already-read ``aru.json`` record back (after changing it)."""
    (Path(folder) / PROVENANCE_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return data


def update_provenance(folder: str | Path, **extra: Any) -> dict[str, Any]:
    """Merge ``extra`` into the ``extra`` section of ``aru.json`` (file hashes untouched)."""
    data = read_provenance(folder)
    data.setdefault("extra", {}).update(extra)
    return rewrite_provenance(folder, data)


def record_files(folder: str | Path, names: list[str]) -> dict[str, Any]:
    """Add the sha256 of files written into ``folder`` after its ``aru.json`` (e.g. reports) to its ``files``."""
    data = read_provenance(folder)
    for name in names:
        data["files"][name] = file_sha256(Path(folder) / name)
    return rewrite_provenance(folder, data)


def check_provenance(folder: str | Path) -> dict[str, Any]:
    """Recompute every hash recorded in ``aru.json``; raise :class:`ProvenanceError` naming each mismatch,
    missing file or unrecorded file. Returns the provenance record when everything matches."""
    folder = Path(folder)
    data = read_provenance(folder)
    recorded: dict[str, str] = data["files"]
    actual = hash_folder(folder)
    problems = []
    for name, sha in recorded.items():
        if name not in actual:
            problems.append(f"missing file {name}")
        elif actual[name] != sha:
            problems.append(f"{name} changed (sha256 {actual[name][:12]} != recorded {sha[:12]})")
    problems += [f"unrecorded file {name}" for name in actual if name not in recorded]
    if problems:
        raise ProvenanceError(
            f"{str(folder)!r} does not match its {PROVENANCE_FILE}: "
            + "; ".join(problems)
            + ". Re-create the output with aru edit rather than publishing a modified or partial folder."
        )
    return data
