"""benchmark: records that are no valid question are rejected with their file and line before any model loads
(issue 16), or left out and counted with on_error="skip"; no --model_args is one line (issue 17, item 6)."""

import json

import pytest

from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.benchmark import benchmark_experiment
from tests.conftest import shared_file
from tests.test_bad_input import _cli, _one_error

from .conftest import read_jsonl

NO_MODEL = "pretrained=/nonexistent/model"  # loading it would fail: a rejection before it proves the order


def _copy_with(tmp_path, relative: str, n: int, bad_line: int, change) -> tuple:
    records = read_jsonl(shared_file(relative))[:n]
    records[bad_line - 1] = change(dict(records[bad_line - 1]))
    path = tmp_path / relative.replace("/", "_")
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path, records


def _key_e_with_two_choices(r):
    return {**r, "choice_texts": r["choice_texts"][:2], "answer_key": "E", "answer_text": r["choice_texts"][0]}


CASES = [
    ("openbookqa", "openbookqa/dev.jsonl", _key_e_with_two_choices, "answer key 'E' is none of the 2 choices' labels"),
    ("openbookqa", "openbookqa/dev.jsonl", lambda r: {**r, "choice_texts": []}, "0 choices; a question needs at least 2"),
    ("winogrande", "winogrande/dev_llmfoundry.jsonl", lambda r: {**r, "continuation": ""},
     "the continuation is empty"),
    ("piqa", "piqa/valid_labeled.jsonl", lambda r: {**r, "label": 0, "sol2": ""}, "a choice is empty"),
]


@pytest.mark.parametrize(("task", "relative", "change", "words"), CASES, ids=[c[3][:20] for c in CASES])
def test_a_bad_record_is_rejected_with_its_line_before_the_model_loads(tmp_path, task, relative, change, words):
    path, _ = _copy_with(tmp_path, relative, 6, 4, change)
    with pytest.raises(MatrixEvalError) as info:
        benchmark_experiment(NO_MODEL, f"{task}={path}", output_path=None)
    msg = str(info.value)
    assert msg.startswith(f"{path}:4: task {task!r}: not a valid multiple-choice question (") and words in msg
    assert "\n" not in msg


def test_hub_layout_answer_key_naming_no_choice(tmp_path):
    record = {"id": "1", "question_stem": "The sun is", "answerKey": "E",
              "choices": {"text": ["hot", "cold"], "label": ["A", "B"]}, "answer_text": "hot"}
    path = tmp_path / "hub.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(MatrixEvalError, match=rf"^{path}:1: .*answer key 'E' is none of the 2 choices' labels A, B"):
        benchmark_experiment(NO_MODEL, f"openbookqa={path}", output_path=None)


def test_skip_leaves_the_record_out_of_every_column_and_counts_it(gpt2_path, tmp_path):
    path, records = _copy_with(tmp_path, "winogrande/dev_llmfoundry.jsonl", 6, 4, lambda r: {**r, "continuation": " "})
    out = benchmark_experiment(f"pretrained={gpt2_path}", f"winogrande={path}", on_error="skip", output_path=None,
                               metrics="loss")
    entry = out["results"]["winogrande"]
    assert entry["n_questions_rejected"] == 1
    assert entry["n_questions"] + entry["n_questions_truncated"] == 5
    assert 3 not in {q["doc_id"] for q in out["questions"]["winogrande"]}


def test_no_model_args_is_one_line_before_anything_loads(tmp_path):
    line = _one_error(_cli("experiment", "benchmark", cwd=tmp_path))
    assert line.startswith("matrixeval: error: benchmark: a causal LM head is needed to score choices")
    assert "pass --model_args pretrained=" in line
    assert not (tmp_path / "results").exists()
