"""responses: greedy and seeded generation is deterministic, keyed (engine.keys) and stored as generated, resumes
identically after a SIGKILL (one process or a torchrun rank), only response tokens are scored, and --responses reads
the answer files of Arena-Hard-Auto, FastChat / MT-bench and AlpacaEval as they are."""

import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.prompt import PAPER_PROMPTS
from matrixeval.experiments.responses import format_prompt, generation_settings, responses_experiment
from tests.conftest import shared_file
from tests.metrics import reference as ref

from .conftest import check_outputs, read_jsonl, samples

COLUMNS = ["task", "n_responses", "n_skipped", "mean_response_tokens", "matrix_entropy", "nuclear_norm", "loss"]


def _generate(path, out_dir, **kw):
    tasks = f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}"
    return responses_experiment(f"pretrained={path}", tasks, limit=5, max_new_tokens=6, batch_size=2,
                                output_path=out_dir, **kw)


def test_greedy_responses_are_deterministic_and_scored_alone_like_the_reference(llama_path, tmp_path):
    a = _generate(llama_path, tmp_path / "a", log_samples=True)
    b = _generate(llama_path, tmp_path / "b")
    check_outputs(a, COLUMNS)
    saved_a = read_jsonl(a["generation"]["files"]["alpaca_eval"])
    saved_b = read_jsonl(b["generation"]["files"]["alpaca_eval"])
    assert [r["response"] for r in saved_a] == [r["response"] for r in saved_b]
    assert [r["doc_id"] for r in saved_a] == list(range(5)) and all(r["n_new_tokens"] == 6 for r in saved_a)
    instructions = [r["instruction"] for r in read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:5]]
    assert [r["prompt"] for r in saved_a] == instructions  # no chat template: the instruction as it is
    assert a["generation"]["score_context"] == "none"
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModelForCausalLM.from_pretrained(llama_path).eval()
    for saved, record in zip(saved_a, samples(a, "alpaca_eval")):
        ids = tok(saved["response"])["input_ids"]  # code/MNN.py: tokenizer(response), BOS included
        layer = record["layers"]["3"]
        assert record["n_input_tokens"] == layer["n_tokens"] + layer["n_dropped"] == len(ids)
        assert ids[0] == tok.bos_token_id and record["n_targets"] == len(ids) - 1
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(hidden), abs=1e-5)
        assert layer["nuclear_norm"] == pytest.approx(ref.mnn_reference_code(hidden), abs=1e-5)
    again = _generate(llama_path, tmp_path / "a")  # same settings: the saved responses are reused
    assert read_jsonl(again["generation"]["files"]["alpaca_eval"]) == saved_a
    assert again["results"]["alpaca_eval"]["n_resumed"] == 5


def test_score_context_prompt_reads_the_prompt_and_measures_the_response_only(llama_path, tmp_path):
    out = _generate(llama_path, tmp_path, score_context="prompt", log_samples=True)
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModelForCausalLM.from_pretrained(llama_path).eval()
    saved = read_jsonl(out["generation"]["files"]["alpaca_eval"])
    for it, record in zip(saved, samples(out, "alpaca_eval")):
        head = [tok.bos_token_id] + tok(it["prompt"], add_special_tokens=False)["input_ids"]
        body = tok(it["response"], add_special_tokens=False)["input_ids"]
        layer = record["layers"]["3"]
        assert record["n_input_tokens"] == len(head) + len(body)
        assert layer["n_tokens"] + layer["n_dropped"] == len(body) == record["n_targets"]
        with torch.no_grad():
            hidden = model(torch.tensor([head + body]), output_hidden_states=True).hidden_states[-1][0, len(head):]
        assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(hidden), abs=1e-5)


def test_system_prompts_one_row_each_and_the_reference_preset(llama_path, tmp_path):
    tasks = f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}"
    out = responses_experiment(f"pretrained={llama_path}", tasks, limit=5, batch_size=2, output_path=tmp_path,
                               system_prompts="builtin", preset="reference")
    rows = out["table"]
    assert [r["system_prompt"] for r in rows] == ["none", "prompt1", "prompt2", "prompt3"]
    assert out["system_prompts"] == PAPER_PROMPTS
    gen = out["generation"]
    assert (gen["sample"], gen["temperature"], gen["top_p"], gen["top_k"], gen["max_new_tokens"]) == (
        True, 0.7, 1.0, 0, 1000)
    instructions = [r["instruction"] for r in read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:5]]
    for name in ("none", "prompt1", "prompt2", "prompt3"):
        saved = read_jsonl(gen["files"][f"alpaca_eval/{name}"])
        system = PAPER_PROMPTS.get(name)
        assert [r["prompt"] for r in saved] == [f"{system}\n{i}" if system else i for i in instructions]
        assert all(r["system_prompt"] == system for r in saved)
        assert max(r["n_new_tokens"] for r in saved) > 6  # 1000 asked: as many as the 64 positions leave
    assert set(out["results"]) == {f"alpaca_eval/{n}" for n in ("none", "prompt1", "prompt2", "prompt3")}
    assert generation_settings("reference", temperature=0.5)["temperature"] == 0.5  # an explicit flag wins
    assert generation_settings()["sample"] is False and generation_settings()["max_new_tokens"] == 256
    with pytest.raises(MatrixEvalError, match="unknown preset"):
        generation_settings("paper")


def test_chat_template_with_a_system_turn(llama_path):
    tok = AutoTokenizer.from_pretrained(llama_path)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant :{% endif %}")
    assert format_prompt(tok, "why ?", "be brief .") == "system : be brief . user : why ? assistant :"
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                         "{% endif %}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}")
    assert format_prompt(tok, "why ?", "be brief .") == "user : be brief .\nwhy ? "


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


# --- issue 16: one key for generated responses; stored as generated; resumed identically --------------------------

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tests import faults  # noqa: E402
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm  # noqa: E402


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _saved(out, variant="mytask"):
    return read_jsonl(out["generation"]["files"][variant])


def test_another_data_file_under_the_same_task_name_generates_new_responses(llama_path, tmp_path, capsys):
    """issue 16: the second file's prompts were answered with the first file's responses ("resumed 4 of 4")."""
    a = _jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TINY_TEXTS[:4]])
    b = _jsonl(tmp_path / "b.jsonl", [{"text": t} for t in TINY_TEXTS[4:8]])
    run = dict(max_new_tokens=5, batch_size=2, output_path=tmp_path / "out")
    first = _saved(responses_experiment(f"pretrained={llama_path}", f"mytask={a}", **run))  # read now: rewritten
    capsys.readouterr()
    second = responses_experiment(f"pretrained={llama_path}", f"mytask={b}", **run)
    err = capsys.readouterr().err
    assert "reusing" not in err and "resumed" not in err
    assert [r["instruction"] for r in _saved(second)] == TINY_TEXTS[4:8]
    fresh = responses_experiment(f"pretrained={llama_path}", f"mytask={b}", **{**run, "output_path": tmp_path / "f"})
    assert _saved(second) == _saved(fresh)
    assert [r["response"] for r in _saved(fresh)] != [r["response"] for r in first]
    assert faults.numbers(second) == faults.numbers(fresh)
    again = responses_experiment(f"pretrained={llama_path}", f"mytask={b}", **run)  # same key: reused, said so
    assert "responses mytask: reusing" in capsys.readouterr().err
    assert _saved(again) == _saved(fresh)


def test_new_weights_in_the_model_folder_regenerate(llama_path, tiny_root, tmp_path, capsys):
    """issue 16: the old weights' responses were scored with the new weights."""
    model = tmp_path / "model"
    shutil.copytree(llama_path, model)
    data = _jsonl(tmp_path / "d.jsonl", [{"text": t} for t in TINY_TEXTS[:4]])
    run = dict(max_new_tokens=5, batch_size=2)
    old = _saved(responses_experiment(f"pretrained={model}", f"mytask={data}", output_path=tmp_path / "out", **run))
    other = make_tiny_causal_lm(tiny_root, "llama", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    capsys.readouterr()
    new = responses_experiment(f"pretrained={model}", f"mytask={data}", output_path=tmp_path / "out", **run)
    err = capsys.readouterr().err
    assert "reusing" not in err and "resumed" not in err
    fresh = responses_experiment(f"pretrained={other}", f"mytask={data}", output_path=tmp_path / "f", **run)
    assert [r["response"] for r in _saved(new)] == [r["response"] for r in _saved(fresh)]
    assert [r["response"] for r in _saved(new)] != [r["response"] for r in old]


def test_every_number_changing_setting_is_in_the_key(llama_path, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": t} for t in TINY_TEXTS[:3]])
    base = dict(max_new_tokens=4, batch_size=2, output_path=tmp_path / "out")
    stores = set()
    for change in ({}, {"max_new_tokens": 3}, {"sample": True}, {"sample": True, "seed": 7},
                   {"sample": True, "temperature": 0.5}, {"sample": True, "top_p": 0.5}, {"max_length": 40},
                   {"batch_size": 1}):
        out = responses_experiment(f"pretrained={llama_path}", f"mytask={data}", **{**base, **change})
        assert out["results"]["mytask"]["n_samples"] == 3
        stores.add(out["generation"]["stores"]["mytask"])
    assert len(stores) == 8  # a folder of its own per key
    assert {Path(s).parent.name for s in stores} == {"store"} and all(Path(s).is_dir() for s in stores)


def _experiment_cmd(args, out, ranks):
    argv = ["-m", "matrixeval", "experiment", "responses", *args, "--output_path", str(out)]
    if ranks == 1:
        return [sys.executable, *argv]
    return [str(faults.VENV_BIN / "torchrun"), "--standalone", f"--nproc_per_node={ranks}", *argv]


def _stored(out):
    return sum(len(p.read_text().splitlines()) for p in out.rglob("store/responses_*/*.jsonl"))


def _finish(args, out, ranks=1):
    proc = subprocess.run(_experiment_cmd(args, out, ranks), env=faults.env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(sorted(out.rglob("responses_*.json"))[-1].read_text()), proc.stderr


def _kill_after(args, out, lines, ranks=1, delay=0.6):
    proc = subprocess.Popen(_experiment_cmd(args, out, ranks), env=faults.env(delay), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _stored(out) < lines or len(list(out.rglob("store/responses_*/*.jsonl"))) < ranks:  # every rank wrote
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no response was stored in time"
        time.sleep(0.05)
    faults.kill_tree(proc.pid)
    proc.wait()
    return _stored(out)


@pytest.fixture(scope="module")
def sampled_run(tiny_root, tmp_path_factory):
    """Seeded sampling over 12 prompts in batches of 2, run to its end without interruption."""
    model = make_tiny_causal_lm(tiny_root, "llama")
    data = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    _jsonl(data, [{"text": TINY_TEXTS[i % 10] + f" {i}"} for i in range(12)])
    args = ["--model_args", f"pretrained={model}", "--tasks", f"mytask={data}", "--batch_size", "2",
            "--max_new_tokens", "6", "--sample", "--seed", "3", "--metrics", "matrix_entropy,nuclear_norm,loss"]
    baseline, _ = _finish(args, tmp_path_factory.mktemp("baseline"))
    return args, baseline


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume_gives_identical_results(sampled_run, tmp_path):
    args, baseline = sampled_run
    kept = _kill_after(args, tmp_path, 4)
    assert 4 <= kept < 12, "the kill must land mid-generation"
    assert not list(tmp_path.rglob("responses_*.json"))
    resumed, err = _finish(args, tmp_path)
    assert f"responses mytask: resumed {kept - kept % 2} of 12" in err
    assert read_jsonl(resumed["generation"]["files"]["mytask"]) == read_jsonl(baseline["generation"]["files"]["mytask"])
    assert faults.numbers(resumed) == faults.numbers(baseline)


@pytest.mark.slow
def test_torchrun_ranks_each_keep_what_they_generated_and_resume_identically(sampled_run, tmp_path):
    """issue 16: a rank killed mid-generation left no responses at all."""
    args, baseline = sampled_run
    kept = _kill_after(args, tmp_path, 4, ranks=2)
    assert 4 <= kept < 12
    shards = list(tmp_path.rglob("store/responses_*/*.jsonl"))
    assert len(shards) == 2  # one per rank, each appended as its batches came
    resumed, err = _finish(args, tmp_path)  # one process reads both ranks' shards
    assert f"responses mytask: resumed {kept - kept % 2} of 12" in err
    assert read_jsonl(resumed["generation"]["files"]["mytask"]) == read_jsonl(baseline["generation"]["files"]["mytask"])
    assert faults.numbers(resumed) == faults.numbers(baseline)


# --- issue 16: empty instructions, chat templates, default metrics ------------------------------------------------


def test_empty_instructions_are_skipped_and_counted_never_generated(llama_path, tmp_path, capsys):
    rows = [{"instruction": "why do birds sing ?", "output": "x"}, {"instruction": "", "output": "y"},
            {"instruction": " \n\t", "output": "z"}, {"instruction": "the cat sat on the mat", "output": "w"}]
    data = _jsonl(tmp_path / "ae.jsonl", rows)
    out = responses_experiment(f"pretrained={llama_path}", f"alpaca_eval={data}", max_new_tokens=5, batch_size=2,
                               output_path=tmp_path / "out")
    assert "responses alpaca_eval: 2 empty or whitespace-only instructions skipped, not generated (doc_id 1, 2)" in (
        capsys.readouterr().err)
    row = out["table"][0]
    assert row["n_responses"] == 2 and row["n_skipped"] == 2
    assert out["generation"]["skipped"]["alpaca_eval"] == {"empty_instruction": 2}
    assert out["results"]["alpaca_eval"]["skipped_responses"] == {"empty_instruction": 2}
    saved = _saved(out, "alpaca_eval")
    assert [r.get("skipped") for r in saved] == [None, "empty_instruction", "empty_instruction", None]
    assert saved[1]["response"] == saved[2]["response"] == "" and saved[1]["n_new_tokens"] == 0
    kept = _jsonl(tmp_path / "kept.jsonl", [rows[0], rows[3]])  # the same two prompts in one batch
    alone = responses_experiment(f"pretrained={llama_path}", f"alpaca_eval={kept}", max_new_tokens=5, batch_size=2,
                                 output_path=tmp_path / "alone")
    assert [r["response"] for r in _saved(alone, "alpaca_eval")] == [saved[0]["response"], saved[3]["response"]]
    only_empty = _jsonl(tmp_path / "e.jsonl", [rows[1], rows[2]])
    with pytest.raises(MatrixEvalError, match="empty_instruction 2"):
        responses_experiment(f"pretrained={llama_path}", f"alpaca_eval={only_empty}", output_path=None)


@pytest.mark.parametrize(("template", "expected"), [
    ("{% for m in messages %}{{ m['content'] }}", "has a syntax error (template line 1)"),
    ("{{ raise_exception('no user turns here') }}", "raised an error: no user turns here"),
])
def test_a_broken_chat_template_is_one_line_naming_it(llama_path, tmp_path, capsys, template, expected):
    model = tmp_path / "model"
    shutil.copytree(llama_path, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    for weights in model.glob("*.safetensors"):  # checked before any weights load: their absence is never reached
        weights.unlink()
    data = _jsonl(tmp_path / "d.jsonl", [{"text": t} for t in TINY_TEXTS[:2]])
    code = main(["experiment", "responses", "--model_args", f"pretrained={model}", "--tasks", f"mytask={data}",
                 "--output_path", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"matrixeval: error: the chat template of {str(model)!r} (")
    assert expected in err[0] and "tokenizer_config.json" in err[0]


def test_default_metrics_leave_out_what_the_model_cannot_compute(llama_path, tmp_path, capsys):
    """issue 17: --responses with the default model (an encoder) failed on its own default metric, loss."""
    given = _jsonl(tmp_path / "a.jsonl", [{"instruction": "", "output": t} for t in TINY_TEXTS[:3]])
    assert main(["experiment", "responses", "--responses", str(given), "--output_path", str(tmp_path / "o")]) == 0
    data = json.loads(next((tmp_path / "o").rglob("responses_*.json")).read_text())
    assert data["config"]["metrics"] == ["matrix_entropy", "nuclear_norm"]  # an empty instruction it never reads
    out = responses_experiment(f"pretrained={llama_path}", responses=given, output_path=None)
    assert out["config"]["metrics"] == ["matrix_entropy", "nuclear_norm", "loss"]
    capsys.readouterr()
    code = main(["experiment", "responses", "--responses", str(given), "--metrics", "loss",
                 "--output_path", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["matrixeval: error: loss/perplexity need a causal LM head and this model has none; "
                                 "drop them from --metrics"]
    assert not (tmp_path / "o2").exists()


# --- issue 17: scoring existing answers in the layouts public benchmarks ship --------------------------------------

ANSWERS = {"model-a": TINY_TEXTS[:4], "model-b": TINY_TEXTS[4:8]}


def _arena_file(path):
    """An Arena-Hard-Auto model_answer file over the first questions of the real question.jsonl."""
    ids = [r["question_id"] for r in read_jsonl(shared_file("arena-hard/question.jsonl"))[:4]]
    return _jsonl(path, [{"question_id": q, "answer_id": f"{m}-{i}", "model_id": m, "tstamp": 1.0,
                          "choices": [{"index": 0, "turns": [{"content": text, "token_len": 9}]}]}
                         for m, texts in ANSWERS.items() for i, (q, text) in enumerate(zip(ids, texts))])


def _score(model, path, out, *flags):
    code = main(["experiment", "responses", "--model_args", f"pretrained={model}", "--responses", str(path),
                 "--metrics", "matrix_entropy,nuclear_norm,loss", "--output_path", str(out), *flags])
    assert code == 0
    return json.loads(next(Path(out).rglob("responses_*.json")).read_text())


def _plain_numbers(model, texts, tmp_path, name):
    """The same answers scored from a plain file of their own: the independent side of each comparison."""
    plain = _jsonl(tmp_path / f"{name}.jsonl", [{"instruction": "q", "response": t} for t in texts])
    return faults.numbers(_score(model, plain, tmp_path / f"plain-{name}"))[name]


def _same_numbers(entry, expected):
    for key in ("matrix_entropy", "nuclear_norm", "loss", "n_samples"):
        assert entry[key] == expected[key], key


def test_arena_hard_answers_of_two_models_one_row_each_with_a_note(llama_path, tmp_path, capsys):
    answers = _arena_file(tmp_path / "arena_answers.jsonl")
    data = _score(llama_path, answers, tmp_path / "out")
    err = capsys.readouterr().err
    assert data["generation"]["format"] == "arena" and data["generation"]["models"] == ["model-a", "model-b"]
    assert [(r["task"], r["answers_by"]) for r in data["table"]] == [("arena_answers", "model-a"),
                                                                     ("arena_answers", "model-b")]
    note = data["generation"]["note"]
    assert f"note: {note}" in err and "2 models" in note and "not by the model that wrote the answers" in note
    for model, texts in ANSWERS.items():
        _same_numbers(data["results"][f"arena_answers/{model}"], _plain_numbers(llama_path, texts, tmp_path, model))


def test_fastchat_and_mt_bench_answer_files(llama_path, tmp_path):
    fastchat = _jsonl(tmp_path / "fc.jsonl", [{"question_id": 81 + i, "text": t, "model_id": "vicuna-7b",
                                                "answer_id": str(i), "metadata": {}}
                                               for i, t in enumerate(ANSWERS["model-a"])])
    data = _score(llama_path, fastchat, tmp_path / "fc")
    assert data["generation"]["format"] == "fastchat" and data["table"][0]["answers_by"] == "vicuna-7b"
    expected = _plain_numbers(llama_path, ANSWERS["model-a"], tmp_path, "a")
    _same_numbers(data["results"]["fc"], expected)
    mt = _jsonl(tmp_path / "mt.jsonl", [{"question_id": 81 + i, "model_id": "m", "choices": [{"turns": [t, "2nd"]}]}
                                        for i, t in enumerate(ANSWERS["model-a"])])  # MT-bench: turns are strings
    _same_numbers(_score(llama_path, mt, tmp_path / "mt")["results"]["mt"], expected)


def test_alpaca_eval_outputs_as_shipped_jsonl_and_json_array(llama_path, tmp_path):
    real = read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:3]
    jsonl = _jsonl(tmp_path / "ae.jsonl", real)
    array = tmp_path / "model_outputs.json"  # AlpacaEval's own file is a JSON array
    array.write_text(json.dumps(real, indent=2))
    a = _score(llama_path, jsonl, tmp_path / "a")
    b = _score(llama_path, array, tmp_path / "b", "--limit", "3")
    assert a["generation"]["format"] == b["generation"]["format"] == "alpaca_eval"
    assert a["table"][0]["answers_by"] == "text_davinci_003"
    _same_numbers(a["results"]["ae"], b["results"]["model_outputs"])
    _same_numbers(a["results"]["ae"], _plain_numbers(llama_path, [r["output"] for r in real], tmp_path, "p"))
    # the instruction is read only with --score_context prompt, as the prompt the answer continues
    c = _score(llama_path, jsonl, tmp_path / "c", "--score_context", "prompt")
    assert c["results"]["ae"]["matrix_entropy"] != a["results"]["ae"]["matrix_entropy"]


def test_text_field_paths_and_a_named_layout(llama_path, tmp_path, capsys):
    nested = _jsonl(tmp_path / "nested.jsonl", [{"id": i, "answer": {"turns": [{"content": t}]}}
                                                for i, t in enumerate(ANSWERS["model-b"])])
    data = _score(llama_path, nested, tmp_path / "n", "--text_field", "answer.turns.0.content")
    _same_numbers(data["results"]["nested"], _plain_numbers(llama_path, ANSWERS["model-b"], tmp_path, "b"))
    assert data["generation"]["text_field"] == "answer.turns.0.content"
    capsys.readouterr()
    code = main(["experiment", "responses", "--model_args", f"pretrained={tmp_path / 'absent'}", "--responses",
                 str(nested), "--responses_format", "arena", "--output_path", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"matrixeval: error: {nested}:1: no response at the arena layout's response field")


@pytest.mark.parametrize(("records", "line", "expected"), [
    ([{"doc_id": 0, "output": "a"}, {"doc_id": 0, "output": "b"}], 2, "doc_id 0 repeats the one at {f}:1"),
    ([{"doc_id": 1.5, "output": "a"}], 1, "doc_id must be a non-negative integer, got 1.5"),
    ([{"doc_id": "abc", "output": "a"}], 1, 'doc_id must be a non-negative integer, got "abc"'),
    ([{"doc_id": True, "output": "a"}], 1, "doc_id must be a non-negative integer, got true"),
    ([{"question_id": 7, "text": "a", "model_id": "m"}, {"question_id": 7, "text": "b", "model_id": "m"}], 2,
     "question_id 7 of model 'm' repeats the one at {f}:1"),
    ([{"output": 3}], 1, "the response is a int, not text"),
    (["just text"], 1, "a record must be a JSON object, got str"),
])
def test_bad_answer_records_are_one_line_naming_the_record(tmp_path, capsys, records, line, expected):
    """issue 16: a repeated doc_id was measured twice, and doc_id "abc" was a traceback."""
    path = _jsonl(tmp_path / "answers.jsonl", records)
    code = main(["experiment", "responses", "--model_args", f"pretrained={tmp_path / 'absent'}", "--responses",
                 str(path), "--output_path", str(tmp_path / "out")])  # the model does not exist: nothing loaded
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"matrixeval: error: {path}:{line}: ") and expected.format(f=path) in err[0], err[0]
    assert not (tmp_path / "out").exists()


def test_the_same_question_id_for_two_models_is_fine_and_an_instruction_is_needed_only_when_read(tmp_path, capsys):
    path = _arena_file(tmp_path / "arena.jsonl")
    code = main(["experiment", "responses", "--model_args", f"pretrained={tmp_path / 'absent'}", "--responses",
                 str(path), "--score_context", "prompt", "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"matrixeval: error: {path}:1: no instruction (or prompt) to read")


def test_a_responses_file_is_keyed_by_what_it_holds(llama_path, tmp_path, capsys):
    path = _jsonl(tmp_path / "answers.jsonl", [{"instruction": "q", "output": t} for t in TINY_TEXTS[:3]])
    first = _score(llama_path, path, tmp_path / "out")
    assert first["generation"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    capsys.readouterr()
    _jsonl(path, [{"instruction": "q", "output": t} for t in [TINY_TEXTS[0], TINY_TEXTS[5], TINY_TEXTS[2]]])
    for p in (tmp_path / "out").rglob("responses_*.json"):
        p.unlink()
    changed = _score(llama_path, path, tmp_path / "out")
    assert "resumed 3 of 3" not in capsys.readouterr().err  # one answer changed: it is measured, not reused
    assert changed["generation"]["inputs_digest"] != first["generation"]["inputs_digest"]
    assert faults.numbers(changed) == faults.numbers(_score(llama_path, path, tmp_path / "fresh"))
    assert faults.numbers(changed) != faults.numbers(first)
