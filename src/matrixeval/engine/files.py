"""The one writer of every whole file matrixeval writes: results JSON, tables, plots, samples, training records.

Each file goes to a temporary name in its own folder, is flushed to disk, then renamed into place, so a reader
(or a crash, a full disk, a permission error) sees the old file or the new one, never a part of one. Any
OSError becomes one `MatrixEvalError` naming the real path. The append-only sample store (`engine.store`) keeps
its own crash-safe lines and does not go through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import MatrixEvalError, WriteError

__all__ = ["atomic_savefig", "write_bytes_atomic", "write_folder_atomic", "write_text_atomic", "write_error"]


def write_error(path: str | Path, err: OSError) -> MatrixEvalError:
    """One line naming the file that could not be written and why (and how to go on)."""
    return WriteError(f"cannot write {str(path)!r}: {err.strerror or err}; free space or choose another "
                           "--output_path, then re-run the same command (stored samples are reused)")


def _write_with(path: str | Path, fill: Callable[[BinaryIO], Any]) -> Path:
    """Create `path`'s folder, let `fill` write a temporary file beside it, fsync, rename into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):  # e.g. the folder could not be made: there is no temporary to remove
            tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` whole or not at all; returns the path."""
    return _write_with(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) to `path` whole or not at all; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def atomic_savefig(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """`fig.savefig` to `path` whole or not at all; the format follows `path`'s suffix unless given."""
    kwargs.setdefault("format", Path(path).suffix.lstrip(".").lower() or None)
    return _write_with(path, lambda handle: fig.savefig(handle, **kwargs))


def write_folder_atomic(path: str | Path, fill: Callable[[Path], Any]) -> Path:
    """Let `fill` write a whole folder under a temporary name beside `path`, then rename it into place.

    `path` must not exist yet (a folder is never merged into another); on any error the temporary folder is
    removed and an OSError becomes one line naming `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fill(tmp)
        os.rename(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
