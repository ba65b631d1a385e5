"""Durable per-sample results: append-only JSON lines, one file per writer, fsync'd after every batch.

Why files and not SQLite: every process (rank, resumed run) appends to its own file, so there is no
locking at all, and it works the same on a laptop disk and on a network filesystem shared by many
nodes, where SQLite's locks (and WAL's shared memory) are not reliable. Each line carries a CRC32 of
its payload, so a torn last write is detected and that sample is recomputed, never read as data.

Long float vectors (dataset entropy's pooled vectors, the augmentation metrics' view vectors: d, or K × d,
numbers per document and layer) are stored as the base64 of their float64 bytes, about half the size of JSON
decimals and read back bit for bit, so a resumed run computes from exactly the numbers an uninterrupted one had.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import math
import os
import socket
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MatrixEvalError


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of everything that changes a number (canonical JSON, sha256)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_PACK_MIN = 8  # a shorter float list stays readable JSON


def _float_shape(x: Any) -> tuple[int, ...] | None:
    """The shape of a non-empty rectangular nested list of floats (not ints: those stay JSON), else None."""
    if not isinstance(x, list) or not x:
        return None
    if type(x[0]) is float:  # a vector: one pass over its items, no call per number
        return (len(x),) if all(type(v) is float for v in x) else None
    inner = _float_shape(x[0])
    if inner is None or any(_float_shape(v) != inner for v in x[1:]):
        return None
    return (len(x), *inner)


def _pack(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _pack(v) for k, v in x.items()}
    if isinstance(x, list):
        shape = _float_shape(x)
        if shape is not None and math.prod(shape) >= _PACK_MIN:
            data = np.asarray(x, dtype="<f8").tobytes()
            return {"f64": list(shape), "b64": base64.b64encode(data).decode("ascii")}
        return [_pack(v) for v in x]
    return x


def _unpack(x: Any) -> Any:
    if isinstance(x, dict):
        if x.keys() == {"f64", "b64"}:
            return np.frombuffer(base64.b64decode(x["b64"]), dtype="<f8").reshape(x["f64"]).tolist()
        return {k: _unpack(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unpack(v) for v in x]
    return x


def _line(record: Mapping[str, Any]) -> str:
    payload = json.dumps(_pack(record), sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(payload.encode()):08x} {payload}\n"


def _parse(line: str) -> dict[str, Any] | None:
    """The record of a complete, intact line; None for a torn or corrupted one."""
    if not line.endswith("\n") or len(line) < 10 or line[8] != " ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload.encode()):
            return None
        return _unpack(json.loads(payload))
    except ValueError:
        return None


class ShardStore:
    """The stored samples of one configuration: a directory of per-writer `.jsonl` shards."""

    def __init__(self, directory: Path, config: Mapping[str, Any]):
        self.directory = Path(directory)
        meta = self.directory / "config.json"
        tmp = meta.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not meta.exists():
                tmp.write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
                os.replace(tmp, meta)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise self._disk_error(err, meta) from None
        writer = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._path = self.directory / f"{writer}.jsonl"
        self._file = None
        self.n_torn = 0

    def load(self) -> dict[int, dict[str, Any]]:
        """Every intact stored record by doc_id, from all writers' shards (later shards win on a tie)."""
        records: dict[int, dict[str, Any]] = {}
        self.n_torn = 0
        for shard in sorted(self.directory.glob("*.jsonl")):
            with open(shard, encoding="utf-8", errors="replace", newline="") as f:
                for line in f:
                    record = _parse(line)
                    if record is None:
                        self.n_torn += 1
                    else:
                        records[int(record["doc_id"])] = record
        return records

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write a batch's records and make them durable before returning."""
        try:
            if self._file is None:
                self._file = open(self._path, "a", encoding="utf-8", newline="")
            self._file.write("".join(_line(r) for r in records))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            # A partly written line fails its CRC on the next load and is recomputed; earlier lines are intact.
            self._abandon()
            raise self._disk_error(err, self._path) from None

    def _abandon(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the same write error again, from the buffer's last flush
            self._file = None

    def _disk_error(self, err: OSError, path: Path) -> Exception:
        """One line naming the store folder and the file being written for a full or unwritable disk; any
        other OSError as it is."""
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return MatrixEvalError(
                f"no space left on the device holding the store folder {str(self.directory)!r} (writing "
                f"{str(path)!r}); free space (or pass --store on another disk) and re-run the same command: "
                "stored samples are kept and reused"
            )
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return MatrixEvalError(f"cannot write into the store folder {str(self.directory)!r} ({err.strerror}); "
                                   "pass --store with a folder you can write to")
        return err

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class NullStore:
    """No durability: for calls that write nothing to disk (output_path=None and no store)."""

    n_torn = 0

    def load(self) -> dict[int, dict[str, Any]]:
        return {}

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass
