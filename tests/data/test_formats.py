"""Every file format, read into plain-file tasks and recipes applied to local files."""

import csv
import json

import pytest

from matrixeval.data import TaskSpec, load_task
from matrixeval.errors import MatrixEvalError

from .conftest import write_jsonl

RECORDS = [
    {"id": 1, "text": "first document"},
    {"id": 2, "text": "second document"},
    {"id": 3, "text": "third document"},
]


def _texts(task):
    return [d.text for d in task.documents]


def test_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", RECORDS)
    task = load_task(TaskSpec("x", str(path)))
    assert (task.name, task.source, task.recipe) == ("x", str(path), None)
    assert _texts(task) == [r["text"] for r in RECORDS]
    assert [d.record for d in task.documents] == RECORDS
    assert (task.n_records, task.skipped) == (3, {})


def test_jsonl_blank_lines_and_bom_are_ignored(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "a"}\n\n   \n{"text": "b"}\n')
    task = load_task(TaskSpec("x", str(path)))
    assert _texts(task) == ["a", "b"] and [d.doc_id for d in task.documents] == [0, 1]


@pytest.mark.parametrize("wrap", [lambda r: r, lambda r: {"data": r}, lambda r: {"version": 2, "rows": r}])
def test_json_list_or_object_holding_one_list(tmp_path, wrap):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(wrap(RECORDS)), encoding="utf-8")
    assert _texts(load_task(TaskSpec("x", str(path)))) == [r["text"] for r in RECORDS]


@pytest.mark.parametrize("content", ['{"a": [1], "b": [2, 3]}', '"just a string"', "{}"])
def test_json_without_one_list_is_an_error(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MatrixEvalError, match="expected a list of records or an object holding one list"):
        load_task(TaskSpec("x", str(path)))


def test_json_invalid_syntax_names_line_and_column(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": }\n]', encoding="utf-8")
    with pytest.raises(MatrixEvalError, match=r"x\.json:3:\d+: invalid JSON"):
        load_task(TaskSpec("x", str(path)))


def test_json_non_object_items(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"text": "a"}, "oops", {"text": "b"}]), encoding="utf-8")
    with pytest.raises(MatrixEvalError, match=r"record 1: expected a JSON object as list item, got str"):
        load_task(TaskSpec("x", str(path)))
    task = load_task(TaskSpec("x", str(path)), on_error="skip")
    assert _texts(task) == ["a", "b"] and task.skipped == {"malformed_record": 1}
    assert [d.doc_id for d in task.documents] == [0, 2]


def test_csv(tmp_path):
    path = tmp_path / "x.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows([*RECORDS, {"id": 4, "text": "multi\nline, with comma"}])
    task = load_task(TaskSpec("x", str(path)))
    assert _texts(task) == [r["text"] for r in RECORDS] + ["multi\nline, with comma"]
    assert task.documents[0].record == {"id": "1", "text": "first document"}


def test_csv_single_string_column_is_found(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("body\nhello world\nsecond row\n", encoding="utf-8")
    assert _texts(load_task(TaskSpec("x", str(path)))) == ["hello world", "second row"]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    task = load_task(TaskSpec("x", str(path)))
    assert _texts(task) == [r["text"] for r in RECORDS] and task.documents[1].record == RECORDS[1]


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(MatrixEvalError, match=r"x\.parquet: could not read Parquet"):
        load_task(TaskSpec("x", str(path)))


def test_txt_one_document_per_paragraph(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("\n\nPara one line one\nline two\n\n  \nPara two\n\n\n\nPara three\n", encoding="utf-8")
    task = load_task(TaskSpec("x", str(path)))
    assert _texts(task) == ["Para one line one\nline two", "Para two", "Para three"]
    assert [d.record for d in task.documents] == [{"text": t} for t in _texts(task)]


def test_recipe_applied_to_local_csv(tmp_path):
    path = tmp_path / "piqa.csv"
    path.write_text("goal,sol1,sol2,label\nOpen a jar,twist the lid,hit it,0\nDry hair,use a towel,use glue,0\n")
    task = load_task(TaskSpec("piqa", str(path)))
    assert task.recipe.name == "piqa"
    assert _texts(task) == ["Open a jar twist the lid", "Dry hair use a towel"]


def test_text_field_overrides_recipe_and_detection(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p1", "reply": "r1"}, {"prompt": "p2", "reply": "r2"}])
    assert _texts(load_task(TaskSpec("a", str(path)), text_field="reply")) == ["r1", "r2"]
    path = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "i", "input": "", "output": "o"}])
    assert _texts(load_task(TaskSpec("alpaca", str(path)))) == ["i\no"]
    assert _texts(load_task(TaskSpec("alpaca", str(path)), text_field="output")) == ["o"]
