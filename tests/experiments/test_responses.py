"""responses: greedy generation is deterministic, resumes from its file, and only response tokens are scored."""

import json

import pytest
from transformers import AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.responses import format_prompt, responses_experiment
from tests.conftest import shared_file

from .conftest import check_outputs, read_jsonl, samples

COLUMNS = ["task", "n_responses", "n_skipped", "mean_response_tokens", "matrix_entropy", "nuclear_norm", "loss"]


def _generate(path, out_dir, **kw):
    tasks = f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}"
    return responses_experiment(f"pretrained={path}", tasks, limit=5, max_new_tokens=6, batch_size=2,
                                output_path=out_dir, **kw)


def test_greedy_responses_are_deterministic_and_only_they_are_scored(llama_path, tmp_path):
    a = _generate(llama_path, tmp_path / "a", log_samples=True)
    b = _generate(llama_path, tmp_path / "b")
    check_outputs(a, COLUMNS)
    saved_a = read_jsonl(a["generation"]["files"]["alpaca_eval"])
    saved_b = read_jsonl(b["generation"]["files"]["alpaca_eval"])
    assert [r["response"] for r in saved_a] == [r["response"] for r in saved_b]
    assert [r["doc_id"] for r in saved_a] == list(range(5)) and all(r["n_new_tokens"] == 6 for r in saved_a)
    instructions = [r["instruction"] for r in read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:5]]
    assert [r["prompt"] for r in saved_a] == instructions  # no chat template: the instruction as it is
    tok = AutoTokenizer.from_pretrained(llama_path)
    for saved, record in zip(saved_a, samples(a, "alpaca_eval")):
        n_response = len(tok(saved["response"], add_special_tokens=False)["input_ids"])
        layer = record["layers"]["3"]
        assert layer["n_tokens"] + layer["n_dropped"] == n_response == record["n_targets"]
        assert record["n_input_tokens"] == len(tok(saved["prompt"])["input_ids"]) + n_response
    again = _generate(llama_path, tmp_path / "a")  # same settings: the saved responses are reused
    assert read_jsonl(again["generation"]["files"]["alpaca_eval"]) == saved_a
    assert again["results"]["alpaca_eval"]["n_resumed"] == 5


def test_seeded_sampling(llama_path, tmp_path):
    one = _generate(llama_path, tmp_path / "1", sample=True, seed=1)
    same = _generate(llama_path, tmp_path / "2", sample=True, seed=1)
    other = _generate(llama_path, tmp_path / "3", sample=True, seed=2)
    responses = [[r["response"] for r in read_jsonl(o["generation"]["files"]["alpaca_eval"])]
                 for o in (one, same, other)]
    assert responses[0] == responses[1] and responses[0] != responses[2]


def test_chat_template_prompt_keeps_one_bos(llama_path):
    tok = AutoTokenizer.from_pretrained(llama_path)
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}user : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant :{% endif %}")
    prompt = format_prompt(tok, "why do birds sing ?")
    assert prompt == "user : why do birds sing ? assistant :"
    assert tok(prompt)["input_ids"].count(tok.bos_token_id) == 1


def test_cli_scores_given_responses_and_encoders_cannot_generate(tmp_path, capsys):
    given = tmp_path / "model_outputs.jsonl"
    given.write_text("".join(json.dumps({"instruction": f"question {i} ?", "output": "Matrix entropy measures "
                                         f"compression of hidden states, case {i}."}) + "\n" for i in range(4)))
    argv = ["experiment", "responses", "--responses", str(given), "--metrics", "matrix_entropy,nuclear_norm",
            "--output_path", str(tmp_path / "out")]
    assert main(argv) == 0
    assert "| model_outputs" in capsys.readouterr().out
    data = json.loads(next((tmp_path / "out").rglob("responses_*.json")).read_text())
    assert data["results"]["model_outputs"]["n_samples"] == 4 and data["generation"]["source"] == str(given)
    with pytest.raises(MatrixEvalError, match="causal LM head is needed to generate"):
        responses_experiment(None, f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}", output_path=None)
