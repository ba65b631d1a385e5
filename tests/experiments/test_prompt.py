"""prompt: the prompt conditions the model, but the matrix holds exactly the QA's tokens."""

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.prompt import PAPER_PROMPTS, prompt_experiment, read_prompts
from tests.conftest import shared_file
from tests.metrics import reference as ref
from tests.tiny_models import TINY_TEXTS, make_tiny_bert

from .conftest import check_outputs, read_jsonl, samples

COLUMNS = ["task", "prompt", "n_samples", "n_truncated", "mean_matrix_tokens", "matrix_entropy", "matrix_entropy_delta"]
PROMPTS = {"short": "you are a small model .",
           "long": "in the morning the sun rises over the quiet river and we wrote a letter ."}


def _direct_entropy(model, ids: list[int], start: int, stop: int) -> float:
    """Matrix entropy of the final hidden states at positions [start, stop) of one direct HF forward."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return ref.matrix_entropy(out.hidden_states[-1][0, start:stop])


def test_changing_only_the_prompt_keeps_exactly_the_qa_tokens(llama_path, tmp_path):
    data = shared_file("openbookqa/dev.jsonl")
    out = prompt_experiment(f"pretrained={llama_path}", f"openbookqa={data}", prompts=PROMPTS, limit=6,
                            metrics="matrix_entropy,loss", output_path=tmp_path, log_samples=True)
    check_outputs(out, COLUMNS)
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModelForCausalLM.from_pretrained(llama_path).eval()
    qa = [r["question_stem"] + "\n" + r["answer_text"] for r in read_jsonl(data)[:6]]
    for name, prompt in {"none": None, **PROMPTS}.items():
        for text, record in zip(qa, samples(out, f"openbookqa/{name}")):
            # independent tokenisation: BOS, then the prompt and its newline, then the QA on its own
            head = [tok.bos_token_id] + (tok(prompt + "\n", add_special_tokens=False)["input_ids"] if prompt else [])
            body = tok(text, add_special_tokens=False)["input_ids"]
            ids = head + body
            layer = record["layers"]["3"]
            assert not record["truncated"] and record["n_input_tokens"] == len(ids)
            assert layer["n_tokens"] + layer["n_dropped"] == len(body)  # the QA, and only the QA, in every arm
            assert record["n_targets"] == len(body)  # the loss, too, is over the QA tokens only (BOS precedes)
            assert layer["matrix_entropy"] == pytest.approx(_direct_entropy(model, ids, len(head), len(ids)), abs=1e-5)
    rows = {r["prompt"]: r for r in out["table"]}
    assert rows["short"]["matrix_entropy"] != rows["long"]["matrix_entropy"] != rows["none"]["matrix_entropy"]
    delta = rows["short"]["matrix_entropy"] - rows["none"]["matrix_entropy"]
    assert rows["short"]["matrix_entropy_delta"] == pytest.approx(delta)
    mean_delta = (rows["short"]["matrix_entropy_delta"] + rows["long"]["matrix_entropy_delta"]) / 2
    mean_value = (rows["short"]["matrix_entropy"] + rows["long"]["matrix_entropy"]) / 2
    assert rows["average"]["matrix_entropy_delta"] == pytest.approx(mean_delta)
    assert rows["average"]["matrix_entropy"] == pytest.approx(mean_value)  # the paper's Average column
    assert out["average_delta"]["openbookqa"]["matrix_entropy"] == pytest.approx(mean_delta)
    assert out["average"]["openbookqa"]["matrix_entropy"] == pytest.approx(mean_value)


def test_encoder_special_tokens_wrap_prompt_and_qa_alike(tiny_root, tmp_path):
    path = make_tiny_bert(tiny_root)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXTS[:4]))
    out = prompt_experiment(f"pretrained={path}", str(data), prompts=PROMPTS, metrics="matrix_entropy",
                            output_path=tmp_path, log_samples=True)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    for name, prompt in {"none": None, **PROMPTS}.items():
        for text, record in zip(TINY_TEXTS, samples(out, f"qa/{name}")):
            head = [tok.cls_token_id] + (tok(prompt + "\n", add_special_tokens=False)["input_ids"] if prompt else [])
            body = tok(text, add_special_tokens=False)["input_ids"]
            ids = head + body + [tok.sep_token_id]  # [CLS] prompt QA [SEP]: the QA alone in the matrix
            layer = record["layers"]["3"]
            assert record["n_input_tokens"] == len(ids) and layer["n_tokens"] + layer["n_dropped"] == len(body)
            with torch.no_grad():
                hidden = model(torch.tensor([ids])).last_hidden_state[0, len(head):len(head) + len(body)]
            assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(hidden), abs=1e-5)


def test_openorca_qa_has_no_system_prompt_unless_asked(gpt2_path, tmp_path):
    data = tmp_path / "orca.jsonl"
    rows = [{"system_prompt": "You are an AI assistant.", "question": TINY_TEXTS[i], "response": TINY_TEXTS[i + 1]}
            for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = AutoTokenizer.from_pretrained(gpt2_path)
    for task, with_system in (("openorca", False), ("openorca_system", True)):
        out = prompt_experiment(f"pretrained={gpt2_path}", f"{task}={data}", prompts=["the cat sat on the mat ."],
                                metrics="matrix_entropy", output_path=tmp_path / task, log_samples=True)
        for r, record in zip(rows, samples(out, f"{task}/none")):
            qa = (r["system_prompt"] + "\n" if with_system else "") + r["question"] + "\n" + r["response"]
            assert record["n_input_tokens"] == len(tok(qa, add_special_tokens=False)["input_ids"])


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
    assert data["prompts"] == PAPER_PROMPTS
    assert list(data["prompts"].values()) == [  # the paper's Table 10, verbatim (typos included)
        "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
        "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
        "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as "
        "you can. While performing the task think step-by-step and justify your steps.",
    ]
    (tmp_path / "bad.json").write_text('{"none": "x"}')
    with pytest.raises(MatrixEvalError, match="reserved"):
        read_prompts(tmp_path / "bad.json")


def test_a_prompt_arm_cut_at_max_length_is_warned(llama_path, tmp_path, capsys):
    data = shared_file("openbookqa/dev.jsonl")
    tok = AutoTokenizer.from_pretrained(llama_path)
    qa = [r["question_stem"] + "\n" + r["answer_text"] for r in read_jsonl(data)[:6]]
    bodies = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in qa]
    head = 1 + len(tok(PROMPTS["long"] + "\n", add_special_tokens=False)["input_ids"])
    limit = max(bodies) + 1  # the arm without a prompt holds every QA whole; the long prompt leaves less room
    differ = sum(min(b, limit - head) != b for b in bodies)
    assert 0 < differ
    out = prompt_experiment(f"pretrained={llama_path}", f"openbookqa={data}", prompts=PROMPTS, limit=6,
                            metrics="matrix_entropy", output_path=tmp_path, max_length=limit)
    check_outputs(out, ["task", "prompt"])
    found = {name: w for name, e in out["results"].items() for w in e["warnings"] if w["code"] == "arms_differ"}
    assert f"in {differ} of 6 documents" in found["openbookqa/long"]["message"]
    short_head = 1 + len(tok(PROMPTS["short"] + "\n", add_special_tokens=False)["input_ids"])
    assert ("openbookqa/short" in found) == any(min(b, limit - short_head) != b for b in bodies)
    assert capsys.readouterr().err.count("[arms_differ] arm 'long'") == 1
    roomy = prompt_experiment(f"pretrained={llama_path}", f"openbookqa={data}", prompts=PROMPTS, limit=6,
                              metrics="matrix_entropy", output_path=None)
    assert not [w for e in roomy["results"].values() for w in e["warnings"] if w["code"] == "arms_differ"]
