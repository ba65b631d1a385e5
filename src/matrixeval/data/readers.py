"""Reading records from local files: .jsonl, .json, .csv, .parquet, .txt.

Readers yield `Row`s lazily. A row that cannot be parsed carries a `problem` (reason, message) instead of a
record, so the loader can skip or fail on it; problems with the whole file raise MatrixEvalError at once.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import MatrixEvalError

__all__ = ["Row", "FORMATS", "read_rows"]


@dataclass(frozen=True)
class Row:
    index: int  # position of the record in its source (0-based)
    where: str  # "FILE:LINE" or similar, for messages
    record: Mapping[str, Any] | None
    problem: tuple[str, str] | None = None  # (skip reason, message) when the row is not a record


def _decode(data: bytes, path: Path, line: int = 1, offset: int = 0) -> str:
    """UTF-8 text of `data` (a leading BOM dropped); the error names the line and byte offset in the file."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line += data[: err.start].count(b"\n")
        raise MatrixEvalError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x} at byte offset {offset + err.start}); "
            "re-encode the file as UTF-8"
        ) from None


def _read_text(path: Path) -> str:
    return _decode(path.read_bytes(), path)


def _object_or_problem(value: Any, what: str) -> tuple[Mapping[str, Any] | None, str | None]:
    if isinstance(value, dict):
        return value, None
    return None, f"expected a JSON object {what}, got {type(value).__name__}"


def _read_jsonl(path: Path) -> Iterator[Row]:
    index = offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw, path, lineno, offset)
            offset += len(raw)
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record, problem = _object_or_problem(json.loads(line), "per line")
            except json.JSONDecodeError as err:
                record, problem = None, f"invalid JSON ({err.msg} at column {err.colno})"
            yield Row(index, where, record, problem and ("malformed_line", f"{where}: {problem}"))
            index += 1


def _read_json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise MatrixEvalError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg}); fix the file") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list):
        raise MatrixEvalError(
            f"{path}: expected a list of records or an object holding one list (like {{\"data\": [...]}}), "
            f"got {type(data).__name__}; use .jsonl for one record per line"
        )
    for i, value in enumerate(data):
        where = f"{path}: record {i}"
        record, problem = _object_or_problem(value, "as list item")
        yield Row(i, where, record, problem and ("malformed_record", f"{where}: {problem}"))


def _read_csv(path: Path) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    start = 2  # line 1 is the header
    try:
        for i, record in enumerate(reader):
            yield Row(i, f"{path}:{start}", record)
            start = reader.line_num + 1
    except csv.Error as err:
        raise MatrixEvalError(f"{path}:{reader.line_num}: invalid CSV ({err}); fix the file") from None


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        raise MatrixEvalError(f"{path}: could not read Parquet ({describe_error(err)}); check the file") from None
    for i, record in enumerate(records):
        yield Row(i, f"{path}: row {i}", record)


def _read_txt(path: Path) -> Iterator[Row]:
    """One document per paragraph: runs of non-blank lines, separated by blank lines."""
    lines = [line.rstrip("\r") for line in _read_text(path).split("\n")]
    index, start, paragraph = 0, 0, []
    for lineno, line in enumerate([*lines, ""], 1):
        if line.strip():
            start = start or lineno
            paragraph.append(line)
        elif paragraph:
            yield Row(index, f"{path}:{start}", {"text": "\n".join(paragraph)})
            index, start, paragraph = index + 1, 0, []


def describe_error(err: Exception) -> str:
    """`Type: first line of the message`, for one-line errors that wrap another library's exception."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


FORMATS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}


def read_rows(path: str | Path, task: str) -> Iterator[Row]:
    """Rows of a local file, by its extension; the file must exist and have a known format."""
    path = Path(path)
    if not path.exists():
        raise MatrixEvalError(f"data file for task {task!r} not found: {str(path)!r}; check the path")
    if not path.is_file():
        raise MatrixEvalError(f"data path for task {task!r} is not a file: {str(path)!r}; give a file, not a folder")
    reader = FORMATS.get(path.suffix.lower())
    if reader is None:
        raise MatrixEvalError(
            f"unknown data format {path.suffix or '(no extension)'!r} for {str(path)!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return reader(path)
