import pytest

from matrixeval.data import TaskSpec, parse_task_specs
from matrixeval.errors import MatrixEvalError


def test_names_files_and_paths():
    specs = parse_task_specs("pydoc_topics, piqa=data/valid.jsonl,some/dir/my_data.csv")
    assert specs == [
        TaskSpec("pydoc_topics", None),
        TaskSpec("piqa", "data/valid.jsonl"),
        TaskSpec("my_data", "some/dir/my_data.csv"),
    ]


def test_sequence_input_and_empty_tokens():
    assert parse_task_specs(["hh_rlhf,", " winogrande "]) == [TaskSpec("hh_rlhf"), TaskSpec("winogrande")]


def test_bare_file_with_known_extension_or_existing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("x")
    assert parse_task_specs("x.jsonl,notes") == [TaskSpec("x", "x.jsonl"), TaskSpec("notes", "notes")]


def test_unknown_name_fails_early_with_suggestion():
    with pytest.raises(MatrixEvalError, match="did you mean 'winogrande'"):
        parse_task_specs("pydoc_topics,winogrnade")


def test_a_new_name_for_a_file_is_a_plain_file_with_a_warning_when_close_to_a_recipe(caplog):
    # NAME=FILE under a name of one's own is a plain file; a name one letter off a recipe says so aloud.
    assert parse_task_specs("mytask=a/dev.jsonl,other=b/dev.jsonl") == [
        TaskSpec("mytask", "a/dev.jsonl"), TaskSpec("other", "b/dev.jsonl")]
    assert "not a recipe" not in caplog.text
    assert parse_task_specs("piq=valid.jsonl") == [TaskSpec("piq", "valid.jsonl")]
    assert "did you mean 'piqa'" in caplog.text
    with pytest.raises(MatrixEvalError, match="invalid task name"):
        parse_task_specs("my task!=valid.jsonl")


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_no_task(spec):
    with pytest.raises(MatrixEvalError, match="no task given"):
        parse_task_specs(spec)


@pytest.mark.parametrize("spec", ["piqa=", "=file.jsonl"])
def test_incomplete_name_file(spec):
    with pytest.raises(MatrixEvalError, match="incomplete; write NAME=LOCAL_FILE"):
        parse_task_specs(spec)


def test_duplicates_rejected():
    with pytest.raises(MatrixEvalError, match="'x' is given twice"):
        parse_task_specs("a/x.jsonl,b/x.csv")
    with pytest.raises(MatrixEvalError, match="'piqa' is given twice"):
        parse_task_specs("piqa,piqa=local.jsonl")
