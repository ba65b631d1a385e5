"""prompt: the prompt conditions the model, but the matrix holds exactly the QA's tokens."""

import json

import pytest
from transformers import AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.prompt import OPENORCA_PROMPTS, prompt_experiment, read_prompts
from tests.conftest import shared_file

from .conftest import check_outputs, read_jsonl, samples

COLUMNS = ["task", "prompt", "n_samples", "n_truncated", "mean_matrix_tokens", "matrix_entropy", "matrix_entropy_delta"]
PROMPTS = {"short": "you are a small model .",
           "long": "in the morning the sun rises over the quiet river and we wrote a letter ."}


def test_changing_only_the_prompt_keeps_exactly_the_qa_tokens(llama_path, tmp_path):
    data = shared_file("openbookqa/dev.jsonl")
    out = prompt_experiment(f"pretrained={llama_path}", f"openbookqa={data}", prompts=PROMPTS, limit=6,
                            metrics="matrix_entropy,loss", output_path=tmp_path, log_samples=True)
    check_outputs(out, COLUMNS)
    tok = AutoTokenizer.from_pretrained(llama_path)
    qa = [r["question_stem"] + "\n" + r["answer_text"] for r in read_jsonl(data)[:6]]
    qa_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in qa]
    short, long_, none = (samples(out, f"openbookqa/{name}") for name in ("short", "long", "none"))
    for a, b, plain, n in zip(short, long_, none, qa_tokens):
        assert not (a["truncated"] or b["truncated"])
        assert a["layers"]["3"]["n_tokens"] + a["layers"]["3"]["n_dropped"] == n  # the QA, and only the QA
        assert b["layers"]["3"]["n_tokens"] + b["layers"]["3"]["n_dropped"] == n
        assert b["n_input_tokens"] > a["n_input_tokens"] > n  # the prompt is in the model's input
        assert a["layers"]["3"]["matrix_entropy"] != b["layers"]["3"]["matrix_entropy"]
        assert a["n_targets"] == n  # the loss, too, is over the QA tokens only
        assert plain["n_input_tokens"] == n + 1  # no prompt: the QA with the tokenizer's BOS
    rows = {r["prompt"]: r for r in out["table"]}
    delta = rows["short"]["matrix_entropy"] - rows["none"]["matrix_entropy"]
    assert rows["short"]["matrix_entropy_delta"] == pytest.approx(delta)
    mean_delta = (rows["short"]["matrix_entropy_delta"] + rows["long"]["matrix_entropy_delta"]) / 2
    assert rows["average"]["matrix_entropy_delta"] == pytest.approx(mean_delta)
    assert out["average_delta"]["openbookqa"]["matrix_entropy"] == pytest.approx(mean_delta)


def test_cli_with_a_prompts_file_and_the_builtin_prompts(gpt2_path, tiny_corpus, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("you are a small model .\n\nthe cat sat on the mat .\n")
    assert read_prompts(prompts) == {"prompt1": "you are a small model .", "prompt2": "the cat sat on the mat ."}
    argv = ["experiment", "prompt", "--model_args", f"pretrained={gpt2_path}", "--tasks", str(tiny_corpus),
            "--limit", "3", "--output_path", str(tmp_path / "out")]
    assert main(argv + ["--prompts", str(prompts)]) == 0
    assert "| average" in capsys.readouterr().out
    data = json.loads(next((tmp_path / "out").rglob("prompt_*.json")).read_text())
    assert set(data["results"]) == {"tiny/none", "tiny/prompt1", "tiny/prompt2"}
    assert main(argv[:-1] + [str(tmp_path / "builtin")]) == 0
    data = json.loads(next((tmp_path / "builtin").rglob("prompt_*.json")).read_text())
    assert data["prompts"] == OPENORCA_PROMPTS and len(OPENORCA_PROMPTS) == 3
    (tmp_path / "bad.json").write_text('{"none": "x"}')
    with pytest.raises(MatrixEvalError, match="reserved"):
        read_prompts(tmp_path / "bad.json")
