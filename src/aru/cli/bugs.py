"""What the CLI says when something goes wrong that is not the user's input.

Operating-system errors (a read-only or full disk, a missing folder) become one line naming the path and the
fix. Any other exception is a bug in aru: the user sees one line and the path of a log file holding the
traceback (``$ARU_LOG_DIR``, default ``~/.cache/aru/logs``), never the traceback itself.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path

import click

FIXES = {
    errno.ENOSPC: "free some space or choose an output on another disk",
    errno.EDQUOT: "free some space or choose an output on another disk",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose an output on a writable disk",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: give a file name",
}


def os_error_message(exc: OSError) -> str:
    """One line: what failed, on which path, and what to do about it."""
    where = " -> ".join(repr(str(p)) for p in (exc.filename, exc.filename2) if p is not None)
    what = exc.strerror or type(exc).__name__
    fix = FIXES.get(exc.errno, "check the path and try again")
    return f"{what}: {where or '(no path given)'}; {fix}. Nothing was written"


def log_dir() -> Path:
    return Path(os.environ.get("ARU_LOG_DIR") or Path.home() / ".cache" / "aru" / "logs").expanduser()


def write_bug_log(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` (and the command line) to a new log file; None if that is impossible."""
    from aru import __version__

    text = f"aru {__version__}, python {sys.version.split()[0]}\ncommand: {' '.join(sys.argv)}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    for folder in (log_dir(), Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"aru-bug-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def bug_exception(exc: BaseException) -> click.ClickException:
    """The one-line message for an unexpected exception, after logging its traceback."""
    path = write_bug_log(exc)
    where = f"the traceback is in {str(path)!r}" if path else "the traceback could not be written to a log file"
    return click.ClickException(
        f"this is a bug in aru ({type(exc).__name__}: {exc}); {where}. Please report it with that file"
    )
