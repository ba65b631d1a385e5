"""Every user error: one line that says what was wrong and how to fix it."""

import logging

import pytest

from matrixeval.data import TaskSpec, load_task
from matrixeval.errors import MatrixEvalError

from .conftest import write_jsonl


def _error(spec, **kwargs) -> str:
    with pytest.raises(MatrixEvalError) as info:
        load_task(spec, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_file_not_found(tmp_path):
    missing = tmp_path / "nope.jsonl"
    msg = _error(TaskSpec("nope", str(missing)))
    assert "not found" in msg and str(missing) in msg and "check the path" in msg
    msg = _error(TaskSpec("piqa", str(missing)))
    assert "'piqa'" in msg and "not found" in msg


def test_folder_instead_of_file(tmp_path):
    msg = _error(TaskSpec("x", str(tmp_path)))
    assert "is a folder but not one saved by datasets' save_to_disk" in msg and str(tmp_path) in msg


def test_unknown_format(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<a/>")
    msg = _error(TaskSpec("x", str(path)))
    assert "unknown data format '.xml'" in msg and ".jsonl" in msg and ".parquet" in msg


def test_unknown_task():
    msg = _error(TaskSpec("piqaa"))
    assert "unknown task 'piqaa'" in msg and "did you mean 'piqa'?" in msg


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".txt"])
def test_non_utf8_bytes(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    good = {".jsonl": b'{"text": "fine"}\n', ".json": b'[{"text": "fine"},\n', ".csv": b"text\nfine\n",
            ".txt": b"fine\n\n"}
    bad = {".jsonl": b'{"text": "caf\xe9"}\n', ".json": b'{"text": "caf\xe9"}]\n', ".csv": b"caf\xe9\n",
           ".txt": b"caf\xe9\n"}
    path.write_bytes(good[suffix] + bad[suffix])
    offset = len(good[suffix]) + bad[suffix].index(b"\xe9")
    line = good[suffix].count(b"\n") + 1
    msg = _error(TaskSpec("latin1", str(path)), on_error="skip")
    assert f"{path}:{line}:" in msg and f"byte offset {offset}" in msg and "0xe9" in msg
    assert "re-encode the file as UTF-8" in msg


def test_malformed_jsonl_line_fails_or_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b",}\n[1, 2]\n{"text": "c"}\n', encoding="utf-8")
    msg = _error(TaskSpec("x", str(path)))
    assert msg.startswith(f"{path}:2: invalid JSON (")
    with caplog.at_level(logging.WARNING, logger="matrixeval.data"):
        task = load_task(TaskSpec("x", str(path)), on_error="skip")
    assert [d.text for d in task.documents] == ["a", "c"] and [d.doc_id for d in task.documents] == [0, 3]
    assert task.skipped == {"malformed_line": 2} and task.n_records == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{path}:2: invalid JSON" in w for w in warnings)
    assert any(f"{path}:3: expected a JSON object" in w for w in warnings)


def test_missing_field_names_field_line_and_fields_present(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"goal": "g", "sol1": "a", "sol2": "b", "label": 1},
        {"question": "g", "sol1": "a", "sol2": "b", "label": 0},
    ])
    msg = _error(TaskSpec("piqa", str(path)))
    assert f"{path}:2:" in msg and "'goal'" in msg and "fields present: question, sol1, sol2, label" in msg
    task = load_task(TaskSpec("piqa", str(path)), on_error="skip")
    assert [d.text for d in task.documents] == ["g b"] and task.skipped == {"missing_field": 1}


def test_missing_text_field_in_plain_file(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"body": "b"}])
    msg = _error(TaskSpec("x", str(path)))
    assert f"{path}:2:" in msg and "'text'" in msg and "fields present: body" in msg
    assert load_task(TaskSpec("x", str(path)), on_error="skip").skipped == {"missing_field": 1}


def test_record_a_recipe_cannot_read(tmp_path):
    path = write_jsonl(tmp_path / "o.jsonl", [{"question_stem": "q", "choices": {"text": ["x"], "label": ["A"]},
                                               "answerKey": "Z"}])
    msg = _error(TaskSpec("openbookqa", str(path)))
    assert "cannot read this record" in msg and f"{path}:1" in msg


def test_non_string_text(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": 5}, {"text": "ok"}])
    assert "is a int, not a string" in _error(TaskSpec("x", str(path)))
    assert load_task(TaskSpec("x", str(path)), on_error="skip").skipped == {"invalid_record": 1}


def test_cannot_tell_the_text_field(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "reply": "r", "n": 1}])
    msg = _error(TaskSpec("x", str(path)))
    assert "cannot tell which field holds the text (fields: prompt, reply, n)" in msg and "--text_field" in msg


def test_empty_and_whitespace_text_dropped_never_documents(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"text": ""}, {"text": " \n\t"}, {"text": None},
                                              {"text": "b"}])
    task = load_task(TaskSpec("x", str(path)))
    assert [(d.doc_id, d.text) for d in task.documents] == [(0, "a"), (4, "b")]
    assert task.skipped == {"empty_text": 3} and task.n_records == 5


def test_recipe_without_text_for_a_record(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "i", "context": "", "response": "r"},
        {"instruction": "i", "context": "Some context.", "response": "r"},
    ])
    task = load_task(TaskSpec("dolly", str(path)))
    assert [d.text for d in task.documents] == ["Some context."] and task.skipped == {"no_text_from_recipe": 1}


def test_no_usable_documents(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": " "}, {"text": ""}])
    msg = _error(TaskSpec("x", str(path)))
    assert msg.startswith("task 'x' has no usable documents") and "empty_text=2" in msg
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n{\"text\": \"\"}\n")
    msg = _error(TaskSpec("bad", str(path)), on_error="skip")
    assert "no usable documents" in msg and "empty_text=1" in msg and "malformed_line=1" in msg


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"limit": 0}, "limit must be a positive number"),
    ({"limit": -3}, "limit must be a positive number"),
    ({"on_error": "ignore"}, "on_error must be 'skip' or 'fail'"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(MatrixEvalError, match=match):
        load_task(TaskSpec("pydoc_topics"), **kwargs)


def test_recipe_with_no_data_of_its_own_needs_a_file(monkeypatch, tmp_path):
    from matrixeval.data import TaskRecipe, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_task(TaskRecipe("local_only", "needs a file", ("body",), to_text=lambda r: r["body"]))
    assert "pass a file with local_only=LOCAL_FILE" in _error(TaskSpec("local_only"))
    path = write_jsonl(tmp_path / "f.jsonl", [{"body": "hello"}])
    assert [d.text for d in load_task(TaskSpec("local_only", str(path))).documents] == ["hello"]
