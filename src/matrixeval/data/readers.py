"""Reading records from local files: .jsonl, .json, .csv, .tsv, .parquet, .txt (each also gzipped, as
``.jsonl.gz``), and folders saved by `datasets` (``save_to_disk``).

Readers yield `Row`s lazily. A row that cannot be parsed carries a `problem` (reason, message) instead of a
record, so the loader can skip or fail on it; problems with the whole file raise MatrixEvalError at once.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import MatrixEvalError

__all__ = ["Row", "DatasetRows", "FORMATS", "TXT_SPLITS", "read_rows"]


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


def _open_binary(path: Path):
    """The file's bytes, decompressed on the fly when its name ends in .gz."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")


def _decompress_error(path: Path, err: Exception) -> MatrixEvalError:
    return MatrixEvalError(f"{path}: could not decompress ({describe_error(err)}); check the file")


def _read_text(path: Path) -> str:
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise _decompress_error(path, err) from None
    return _decode(data, path)


# Python's json parser recurses once per level: a value nested deeper than the interpreter's limit (about 1000)
# is refused as a malformed record, not a RecursionError.
_TOO_DEEP = "JSON nested too deeply to read (more levels than Python's recursion limit)"


def _object_or_problem(value: Any, what: str) -> tuple[Mapping[str, Any] | None, str | None]:
    if isinstance(value, dict):
        return value, None
    return None, f"expected a JSON object {what}, got {type(value).__name__}"


def _read_jsonl(path: Path) -> Iterator[Row]:
    index = offset = 0
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(_lines(fh, path), 1):
            line = _decode(raw, path, lineno, offset)
            offset += len(raw)
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record, problem = _object_or_problem(json.loads(line), "per line")
            except json.JSONDecodeError as err:
                record, problem = None, f"invalid JSON ({err.msg} at column {err.colno})"
            except RecursionError:
                record, problem = None, _TOO_DEEP
            yield Row(index, where, record, problem and ("malformed_line", f"{where}: {problem}"))
            index += 1


def _lines(fh, path: Path) -> Iterator[bytes]:
    try:
        yield from fh
    except (OSError, EOFError) as err:
        raise _decompress_error(path, err) from None


def _columns_as_records(data: dict) -> list | None:
    """{"a": [1, 2], "b": [3, 4]} -> [{"a": 1, "b": 3}, {"a": 2, "b": 4}]; None when `data` is not columnar
    (not all values are lists of one length, or the lists hold objects)."""
    lengths = {len(v) for v in data.values() if isinstance(v, list)}
    if not data or len(lengths) != 1 or not all(isinstance(v, list) for v in data.values()):
        return None
    if any(isinstance(x, dict) for v in data.values() for x in v):
        return None
    return [dict(zip(data, values)) for values in zip(*data.values())]


def _read_json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise MatrixEvalError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg}); fix the file") from None
    except RecursionError:
        raise MatrixEvalError(f"{path}: {_TOO_DEEP}; fix the file") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        columns = _columns_as_records(data) if len(lists) > 1 else None
        data = lists[0] if len(lists) == 1 else data if columns is None else columns
    if not isinstance(data, list):
        raise MatrixEvalError(
            f"{path}: expected a list of records or an object holding one list (like {{\"data\": [...]}}), "
            f"got {type(data).__name__}; use .jsonl for one record per line (an object of "
            "equal-length lists of values is read as columns)"
        )
    for i, value in enumerate(data):
        where = f"{path}: record {i}"
        record, problem = _object_or_problem(value, "as list item")
        yield Row(i, where, record, problem and ("malformed_record", f"{where}: {problem}"))


def _read_csv(path: Path, tsv: bool = False) -> Iterator[Row]:
    """CSV with a header line (quoted fields allowed); TSV: tab-separated, no quoting (a `"` is a character)."""
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), **options)
    start = 2  # line 1 is the header
    try:
        for i, record in enumerate(reader):
            where = f"{path}:{start}"
            if None in record:  # more fields than the header names
                yield Row(i, where, None, ("malformed_line", f"{where}: {len(record) - 1 + len(record[None])} "
                                           f"fields, the header names {len(reader.fieldnames or [])}"))
            else:
                yield Row(i, where, record)
            start = reader.line_num + 1
    except csv.Error as err:
        raise MatrixEvalError(f"{path}:{reader.line_num}: invalid {'TSV' if tsv else 'CSV'} ({err}); "
                              "fix the file") from None


def _read_tsv(path: Path) -> Iterator[Row]:
    return _read_csv(path, tsv=True)


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        raise MatrixEvalError(f"{path}: could not read Parquet ({describe_error(err)}); check the file") from None
    for i, record in enumerate(records):
        yield Row(i, f"{path}: row {i}", record)


# How a .txt file is cut into documents (`txt_split`); the README's "Your own data" describes each.
TXT_SPLITS = ("blank", "line", "wikitext")
# A wikitext top-level heading, " = Title = " (not " = = Section = = "): it starts a new document.
WIKITEXT_HEADING = re.compile(r"^ = [^=].* = $")
_BLANK_LINE = ("empty_text", "")  # a blank line read as a record: counted as skipped, never an error


def _read_txt(path: Path, split: str = "blank") -> Iterator[Row]:
    """Documents of a text file, by `split`:

    - ``blank``: one document per paragraph (runs of non-blank lines; the blank lines between separate them);
    - ``line``: one document per line; a blank line is a record with no text (counted as ``empty_text``);
    - ``wikitext``: one document per article, as lm-eval's document-level wikitext: a top-level heading line
      ``" = Title = "`` starts a document, which runs (heading, blank lines and all) up to the next one; text
      before the first heading is a document of its own, or a skipped ``empty_text`` record when blank.
    """
    lines = [line.removesuffix("\r") for line in _read_text(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no line
    if split == "line":
        for i, line in enumerate(lines):
            where = f"{path}:{i + 1}"
            yield Row(i, where, {"text": line}) if line.strip() else Row(i, where, None, _BLANK_LINE)
    elif split == "wikitext":
        yield from _wikitext_documents(lines, path)
    else:
        yield from _paragraphs(lines, path)


def _paragraphs(lines: list[str], path: Path) -> Iterator[Row]:
    index, start, paragraph = 0, 0, []
    for lineno, line in enumerate([*lines, ""], 1):
        if line.strip():
            start = start or lineno
            paragraph.append(line)
        elif paragraph:
            yield Row(index, f"{path}:{start}", {"text": "\n".join(paragraph)})
            index, start, paragraph = index + 1, 0, []


def _wikitext_documents(lines: list[str], path: Path) -> Iterator[Row]:
    starts = [i for i, line in enumerate(lines) if WIKITEXT_HEADING.match(line)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    for index, (a, b) in enumerate(zip(starts, [*starts[1:], len(lines)])):
        text, where = "\n".join(lines[a:b]), f"{path}:{a + 1}"
        yield Row(index, where, {"text": text}) if text.strip() else Row(index, where, None, _BLANK_LINE)


class DatasetRows(Sequence[Row]):
    """A `datasets.Dataset` as rows, with random access (for sampling) and lazy iteration."""

    def __init__(self, dataset: Any, where: str):
        self._ds, self._where = dataset, where

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> Row:  # type: ignore[override]
        return Row(i, f"{self._where} record {i}", self._ds[i])

    def __iter__(self) -> Iterator[Row]:
        for i, record in enumerate(self._ds):
            yield Row(i, f"{self._where} record {i}", record)


def _read_saved_dataset(path: Path, split: str | None = None) -> DatasetRows:
    """A folder written by `Dataset.save_to_disk` (or one split of a `DatasetDict`'s: the only one, or `split`)."""
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError and others for a folder it cannot read
        raise MatrixEvalError(f"{path}: could not read the saved data set ({describe_error(err)}); "
                              "give a folder written by datasets' save_to_disk") from None
    if isinstance(data, datasets.DatasetDict):
        if split in data and len(data) != 1:
            return DatasetRows(data[split], str(path / split))
        if len(data) != 1:
            raise MatrixEvalError(f"{path}: the saved data set holds splits {', '.join(data)}; give one of them, "
                                  f"e.g. {path / next(iter(data))}")
        data = next(iter(data.values()))
    return DatasetRows(data, str(path))


def _is_saved_dataset(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def describe_error(err: Exception) -> str:
    """`Type: first line of the message`, for one-line errors that wrap another library's exception."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


FORMATS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}


def _format_suffix(path: Path) -> str:
    """The suffix that names the format: ".jsonl" for x.jsonl and x.jsonl.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else path.suffix.lower()


def read_rows(path: str | Path, task: str, *, txt_split: str = "blank", split: str | None = None) -> Iterable[Row]:
    """Rows of a local file, by its extension (a trailing .gz is decompressed), or of a folder saved by
    `datasets` (of a DatasetDict's several splits, `split`); `txt_split` (one of TXT_SPLITS) cuts a .txt file
    into documents."""
    path = Path(path)
    if txt_split not in TXT_SPLITS:
        raise MatrixEvalError(f"unknown txt split {txt_split!r}; use one of {', '.join(TXT_SPLITS)}")
    if not path.exists():
        raise MatrixEvalError(f"data file for task {task!r} not found: {str(path)!r}; check the path")
    if path.is_dir():
        if _is_saved_dataset(path):
            return _read_saved_dataset(path, split)
        raise MatrixEvalError(f"data path for task {task!r} is a folder but not one saved by datasets' "
                              f"save_to_disk: {str(path)!r}; give a file or such a folder")
    suffix = _format_suffix(path)
    reader = FORMATS.get(suffix)
    if reader is None or (suffix == ".parquet" and path.suffix.lower() == ".gz"):
        raise MatrixEvalError(
            f"unknown data format {''.join(path.suffixes[-2:]) or '(no extension)'!r} for {str(path)!r}; "
            f"use one of {', '.join(FORMATS)} (each but .parquet also gzipped, as .jsonl.gz), "
            "or a folder saved by datasets"
        )
    return _read_txt(path, txt_split) if reader is _read_txt else reader(path)
