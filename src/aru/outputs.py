"""One output policy for every aru command that writes (fit, edit, run, demo, gguf, organism train).

The rules, in the order they are checked:

1. **Never write into or over an input.** Real paths (symlinks resolved) are compared both ways: the output may
   not be an input, lie inside an input folder, or contain an input (a directions file inside the folder that
   ``--force`` would replace is refused up front).
2. **Replace only aru's own outputs.** An existing target is replaced only when it is an earlier aru output of
   the *same kind*, recognised by its own record (``aru.json`` for edit/run folders, the ``aru_format``
   metadata of a directions file, the GGUF magic, ``training.json`` + ``organism.json`` of an organism), holds
   nothing aru did not write, and ``--force``/``--overwrite`` was given. Anything else is refused, never deleted.
3. **One writer per target.** An exclusive ``fcntl.flock`` on ``.NAME.aru-lock`` beside the target is held from
   the first check to the final rename; a second aru process writing the same target is refused at once.
4. **All-or-nothing.** Everything is written into a staging path unique to the process,
   ``.NAME.aru-partial-<pid>-<random>``; the target is checked again just before the rename, and the staging
   path is removed on any failure (SIGTERM is turned into the normal unwinding by :func:`sigterm_unwinds`).
   Staging paths of processes that no longer run (``kill -9``) are removed by the next writer, with a message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aru.errors import CheckpointError

PROVENANCE_FILE = "aru.json"
#: kinds of output; the flag that allows replacing an earlier one is the command's --force/--overwrite
KINDS = ("edit", "run", "directions", "gguf", "organism", "real-organism", "real-adapter")
FOLDER_KINDS = {"edit", "run", "organism", "real-organism", "real-adapter"}
#: the files of a real-organism base/tuned folder (aru.organism.real.base.save_folder) and of a trained adapter
REAL_ORGANISM_FILES = re.compile(
    r"^(real-organism\.json|config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|"
    r"model\.safetensors\.index\.json|tokenizer(_config)?\.json|special_tokens_map\.json|chat_template\.jinja|"
    r"vocab\.json|merges\.txt|added_tokens\.json)$"
)
REAL_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "training.json")
#: files aru writes into a checkpoint folder after hashing it (the model card)
UNRECORDED_OK = {PROVENANCE_FILE, "README.md"}
#: files of an aru run output that describe that run; an edit of that output must not carry them over
RUN_LEFTOVERS = ("report.md", "report.json", "selection.png", "aru/directions.safetensors", "README.md")
STAGING = re.compile(r"^\.+(?P<name>.+?)\.aru-(?P<what>partial|old)-(?P<pid>\d+)-[0-9a-f]+(?:\.tmp)?$")
LEGACY = re.compile(r"^\.(?P<name>.+?)\.aru-(?:partial|old|run-\w+)$")  # names of aru before 0.2
VCS_DIRS = frozenset({".git", ".hg", ".svn"})


class OutputError(CheckpointError):
    """An output path aru must not write: it overlaps an input, is not aru's, or is being written by another run."""


class OutputExistsError(OutputError, FileExistsError):
    """The target exists and may be replaced only with --force/--overwrite (or not at all)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (staging cleanup, lock release) runs."""


def real(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _say(msg: str) -> None:
    print(f"aru: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- recognition


def kind_of(path: str | os.PathLike) -> str | None:
    """The kind of aru output at ``path`` from its own record, or None when it is not recognisably aru's."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_file():
        try:
            with open(path, "rb") as f:
                head = f.read(8)
                if head[:4] == b"GGUF":
                    return "gguf"
                if path.suffix == ".safetensors" and len(head) == 8:
                    n = int.from_bytes(head, "little")
                    if 0 < n < (64 << 20):
                        meta = json.loads(f.read(n)).get("__metadata__") or {}
                        return "directions" if "aru_format" in meta else None
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            return None
        return None
    if not path.is_dir():
        return None
    record = path / PROVENANCE_FILE
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "aru_provenance" not in data:
            return None
        if data.get("kind") in ("edit", "run"):
            return data["kind"]
        return "run" if isinstance(data.get("extra"), dict) and "recipe" in data["extra"] else "edit"
    if (path / "training.json").is_file() and all((path / s / "organism.json").is_file() for s in ("base", "tuned")):
        return "organism"
    if (path / "real-organism.json").is_file():
        return "real-organism"
    if all((path / name).is_file() for name in REAL_ADAPTER_FILES):
        return "real-adapter"
    return None


def foreign_files(path: Path, kind: str) -> list[str]:
    """Files inside an aru output folder that aru did not write (user files, a .git folder, ...)."""
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink())
    if kind in ("edit", "run"):
        recorded = set(json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))["files"])
        return [f for f in files if f not in recorded and f not in UNRECORDED_OK]
    if kind == "organism":
        return [f for f in files if f != "training.json" and f.split("/")[0] not in ("base", "tuned")]
    if kind == "real-organism":
        return [f for f in files if not REAL_ORGANISM_FILES.match(f)]
    if kind == "real-adapter":
        return [f for f in files if f not in REAL_ADAPTER_FILES]
    return []


def run_leftovers(folder: str | os.PathLike) -> set[str]:
    """Files of ``folder`` that describe an earlier aru run (reports, its directions, its card): an edit of that
    folder must not copy them into the new output, where they would be hashed and published as if current."""
    folder = Path(folder)
    if kind_of(folder) not in ("edit", "run"):
        return set()
    return {name for name in RUN_LEFTOVERS if (folder / name).exists()}


# ---------------------------------------------------------------------------------------------------- checks


def check_inputs(target: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse a target that is an input, lies inside an input folder, or contains an input (both ways)."""
    t = real(target)
    for inp in inputs:
        if inp is None:
            continue
        i = real(inp)
        if t == i or i in t.parents:
            raise OutputError(
                f"output {str(t)!r} overlaps the input {str(i)!r} (it is the input or lies inside it); aru never "
                "modifies its input: choose an output outside it"
            )
        if t in i.parents:
            raise OutputError(
                f"output {str(t)!r} overlaps the input {str(i)!r}: the input lies inside the output, which would "
                "be replaced, and aru never modifies its input: move the input out of it or choose another output"
            )


def check_target(target: str | os.PathLike, kind: str, *, force: bool, flag: str = "--force") -> None:
    """Refuse an existing ``target`` unless it is an earlier aru output of ``kind``, holding only aru's files, and
    ``force`` is set. A missing target passes."""
    assert kind in KINDS, kind
    t = Path(target)
    if not os.path.lexists(t):
        return
    what = "folder" if kind in FOLDER_KINDS else "file"
    if t.is_symlink():
        raise OutputError(f"output {str(t)!r} is a symbolic link; aru does not replace links: choose another output")
    if kind in FOLDER_KINDS and not t.is_dir():
        raise OutputError(f"output {str(t)!r} is a file, and aru writes a folder there; it will not delete the file")
    if kind not in FOLDER_KINDS and t.is_dir():
        raise OutputError(f"output {str(t)!r} is a folder; give a file name inside it, e.g. {str(t / 'out')!r}")
    found = kind_of(t)
    if found is None:
        if t.is_dir() and not any(t.iterdir()):
            if force:
                return
            raise OutputExistsError(f"output {str(t)!r} already exists (empty); choose another path or pass {flag}")
        state = "is not empty and " if t.is_dir() else ""
        raise OutputExistsError(
            f"output {str(t)!r} already exists, {state}is not an aru output (aru recognises its own outputs by "
            f"their record); {flag} only replaces aru outputs: choose another {what}"
        )
    if found != kind:
        raise OutputError(
            f"output {str(t)!r} is an aru {found} output, not an aru {kind} output; {flag} only replaces outputs "
            f"of the same kind: choose another {what}"
        )
    extra = foreign_files(t, kind) if t.is_dir() else []
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise OutputError(
            f"output {str(t)!r} is an aru {kind} output but also holds files aru did not write ({shown}); "
            f"aru never deletes them: move them out or choose another {what}"
        )
    if not force:
        raise OutputExistsError(
            f"output {str(t)!r} already exists (an earlier aru {kind} output); choose another path or pass {flag}"
        )


# ---------------------------------------------------------------------------------------------------- staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path, say: Callable[[str], None] = _say) -> list[Path]:
    """Remove staging paths for ``target`` left by aru processes that no longer run; returns what was removed.

    Call it while holding the target's lock: then no live aru process can own a staging path without a pid."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.iterdir():
        m = STAGING.match(p.name)
        if m:
            if m["name"] != target.name.lstrip(".") or _alive(int(m["pid"])):
                continue
        else:
            m = LEGACY.match(p.name)
            if not m or m["name"] != target.name:
                continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        who = f"process {m['pid']}, which no longer runs" if "pid" in m.groupdict() else "an interrupted aru run"
        say(f"removed {str(p)!r}, a partial output left by {who}")
        removed.append(p)
    return removed


class Output:
    """Claim ``target`` for writing: checks, lock, stale cleanup and a fresh staging path.

    Write everything into :attr:`staging`, then call :meth:`commit`; :meth:`close` (or leaving the ``with``
    block) removes the staging path unless it was committed and releases the lock::

        with Output(out, "edit", force=force, inputs=[model, directions]) as o:
            write_into(o.staging)
            o.commit()
    """

    def __init__(
        self,
        target: str | os.PathLike,
        kind: str,
        *,
        force: bool = False,
        flag: str = "--force",
        inputs: Iterable[str | os.PathLike | None] = (),
        say: Callable[[str], None] = _say,
    ) -> None:
        self.target = real(target)
        self.kind, self.force, self.flag = kind, force, flag
        self.inputs = [i for i in inputs if i is not None]
        self.say = say
        self.folder = kind in FOLDER_KINDS
        self.staging: Path | None = None
        self._lock_fd: int | None = None
        self._lock_path = self.target.parent / f".{self.target.name}.aru-lock"
        self.committed = False
        check_inputs(self.target, self.inputs)
        check_target(self.target, kind, force=force, flag=flag)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            clean_stale(self.target, say)
            check_target(self.target, kind, force=force, flag=flag)
            self.staging = self.target.parent / self._name("partial")
            if self.folder:
                self.staging.mkdir()
        except BaseException:
            self.close()
            raise

    def _name(self, what: str) -> str:
        return f".{self.target.name}.aru-{what}-{os.getpid()}-{secrets.token_hex(4)}"

    def _lock(self) -> None:
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputError(
                    f"another aru process is writing {str(self.target)!r} (it holds {str(self._lock_path)!r}); "
                    "wait for it to finish or choose another output"
                ) from None
            # the holder before us may have removed the file after we opened it: lock the file that is there now
            try:
                same = os.stat(self._lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._lock_fd = fd
                return
            os.close(fd)

    def commit(self, path: str | os.PathLike | None = None) -> Path:
        """Check the target again and rename the staging path (or ``path``, a folder inside it) onto it; an earlier
        aru output is swapped out and removed only after the new one is in place."""
        assert self.staging is not None and not self.committed
        src = self.staging if path is None else Path(path)
        assert src == self.staging or self.staging in src.parents, src
        check_inputs(self.target, self.inputs)
        check_target(self.target, self.kind, force=self.force, flag=self.flag)
        if not self.folder:
            os.replace(src, self.target)  # atomic, also over an earlier file
        elif not os.path.lexists(self.target):
            src.rename(self.target)
        else:
            old = self.target.parent / self._name("old")
            self.target.rename(old)
            try:
                src.rename(self.target)
            except BaseException:
                old.rename(self.target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        if src != self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
        return self.target

    def close(self) -> None:
        if self.staging is not None and not self.committed and os.path.lexists(self.staging):
            if self.staging.is_dir() and not self.staging.is_symlink():
                shutil.rmtree(self.staging, ignore_errors=True)
            else:
                self.staging.unlink(missing_ok=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                self._lock_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------- signals


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated`, so cleanup runs as after Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
