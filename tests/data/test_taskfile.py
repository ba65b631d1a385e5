"""Task files (YAML and JSON, lm-eval's keys) on the real files in ../shared/data; texts checked against
computations written out here, bad files against one error line naming the file and the key."""

import csv
import json
import logging
import re
import tomllib
from pathlib import Path

import pytest

from matrixeval.cli import main
from matrixeval.data import TaskSpec, list_tasks, load_task, parse_task_specs
from matrixeval.data.taskfile import BUILTIN_TASKS_DIR, FUNCTIONS, include_tasks, read_task_file
from matrixeval.errors import MatrixEvalError
from tests.data.conftest import read_jsonl, shared_file
from tests.test_bad_input import _cli, _one_error

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _tsv_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_yaml_jinja_template_on_the_openbookqa_tsv(tmp_path):
    tsv = shared_file("openbookqa/dev.tsv")
    path = _write(tmp_path, "obqa.yaml", f"""
task: obqa_tsv
dataset_path: {tsv}
doc_to_text: '{{{{ doc["Question Stem"] }}}} {{{{ doc["Choices"] }}}}'
doc_to_qa: ['{{{{ doc["Question Stem"] }}}}', Answer Key]
description: OpenBookQA dev, stem and choices
""")
    (spec,) = parse_task_specs(str(path))
    task = load_task(spec)
    rows = _tsv_rows(tsv)
    assert spec.name == "obqa_tsv" and len(task.documents) == len(rows) == 500
    # SOURCES.md: "Complete Question" == stem + " " + choices on every row, an independent check of the template.
    assert [d.text for d in task.documents] == [r["Complete Question"] for r in rows]
    assert [d.text for d in task.documents] == [f"{r['Question Stem']} {r['Choices']}" for r in rows]
    assert task.documents[3].where == f"{tsv}:5"  # the header is line 1
    assert task.recipe.to_qa(task.documents[0].record) == (rows[0]["Question Stem"], rows[0]["Answer Key"])


def test_json_field_path_with_data_files_relative_to_the_task_file(tmp_path):
    questions = shared_file("arena-hard/question.jsonl")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "q.jsonl").symlink_to(questions)
    _write(tmp_path / "tasks", "arena.json", json.dumps({
        "task": "arena_first_turn", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": "../data/q.jsonl"}}, "test_split": "test",
        "doc_to_text": "turns.0.content", "min_tokens": 4, "max_tokens": 256, "metrics": ["matrix_entropy"]}))
    # ../data is relative to the task file's folder, wherever the run starts
    recipes = include_tasks(str(tmp_path / "tasks"))
    recipe = recipes["arena_first_turn"]
    assert (recipe.min_tokens, recipe.max_tokens, recipe.metrics, recipe.rolling) == (4, 256, ("matrix_entropy",), False)
    task = load_task(parse_task_specs("arena_first_turn", tmp_path / "tasks")[0])
    expected = [r["turns"][0]["content"] for r in read_jsonl(questions)]
    assert [d.text for d in task.documents] == expected and len(expected) == 500
    assert task.documents[0].context is None


def test_wikitext_documents_rolling_and_a_txt_split(tmp_path):
    txt = shared_file("wikitext-2/test.txt")
    path = _write(tmp_path, "wt.yaml", f"""
task: wikitext_docs
dataset_path: {txt}
txt_split: wikitext
output_type: loglikelihood_rolling
metric_list:
  - metric: word_perplexity
  - metric: perplexity
num_fewshot: 0
""")
    recipe = read_task_file(path)
    assert recipe.rolling and recipe.txt_split == "wikitext" and recipe.metrics == ("word_perplexity", "perplexity")  # both are matrixeval metrics
    task = load_task(TaskSpec(recipe.name, recipe=recipe), txt_split="line")  # the task file's split wins
    lines = txt.read_text(encoding="utf-8").split("\n")[:-1]
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r" = [^=].* = ", line)]
    assert len(task.documents) == len(heads) == 62 and heads[0] == 1  # line 0 is blank: a skipped record
    assert task.documents[0].text == "\n".join(lines[heads[0]:heads[1]])
    assert task.documents[-1].text == "\n".join(lines[heads[-1]:])


def test_context_key_gives_each_document_its_context(tmp_path):
    data = shared_file("alpaca_eval/alpaca_eval.jsonl")
    path = _write(tmp_path, "ae.yaml", f"""
task: ae_answers
dataset_path: json
dataset_kwargs:
  data_files: {data}
doc_to_context: "Instruction: {{{{ instruction }}}}\\n"
doc_to_text: output
""")
    task = load_task(parse_task_specs(str(path))[0], limit=20)
    records = read_jsonl(data)[:20]
    assert [(d.context, d.text) for d in task.documents] == [
        (f"Instruction: {r['instruction']}\n", r["output"]) for r in records]


def test_include_variant_and_a_user_recipe_on_another_file(tmp_path):
    data = shared_file("piqa/valid_labeled.jsonl")
    _write(tmp_path, "base.yaml", f"task: piqa_goal\ndataset_path: {data}\ndoc_to_text: goal\nmax_tokens: 32\n")
    _write(tmp_path, "variant.yaml", "include: base.yaml\ntask: piqa_sol1\ndoc_to_text: '{{goal}} {{sol1}}'\n")
    tasks = include_tasks(tmp_path)
    assert set(tasks) == {"piqa_goal", "piqa_sol1"} and tasks["piqa_sol1"].max_tokens == 32
    records = read_jsonl(data)[:5]
    sol1 = load_task(parse_task_specs("piqa_sol1", tmp_path)[0], limit=5)
    assert [d.text for d in sol1.documents] == [f"{r['goal']} {r['sol1']}" for r in records]
    # NAME=FILE applies a user's task to another file, as a built-in's recipe
    other = tmp_path / "two.jsonl"
    other.write_text("".join(json.dumps({"goal": g}) + "\n" for g in ("a b c", "d e")), encoding="utf-8")
    goal = load_task(parse_task_specs(f"piqa_goal={other}", str(tmp_path))[0])
    assert [d.text for d in goal.documents] == ["a b c", "d e"]


def test_ignored_lm_eval_keys_are_one_warning(tmp_path, caplog):
    data = shared_file("piqa/valid_labeled.jsonl")
    path = _write(tmp_path, "ign.yaml", f"task: ign\ndataset_path: {data}\ndoc_to_text: goal\nnum_fewshot: 5\n"
                                        "group: mine\ntag: [a]\ndoc_to_target: sol1\n")
    with caplog.at_level(logging.WARNING, logger="matrixeval.data.taskfile"):
        read_task_file(path)
        read_task_file(path)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"task file {path}: ignoring lm-eval keys matrixeval does not use: "
                        "num_fewshot, group, tag, doc_to_target"]


def test_json_function_string_and_a_template_reproduce_builtins(tmp_path):
    data = shared_file("winogrande/dev_llmfoundry.jsonl")
    path = _write(tmp_path, "w.json", json.dumps({"task": "wino_mine", "dataset_path": str(data),
                                                  "doc_to_text": "!function winogrande_text",
                                                  "doc_to_qa": "!function winogrande_qa"}))
    task = load_task(parse_task_specs(str(path))[0], limit=30)
    records = read_jsonl(data)[:30]
    assert [d.text for d in task.documents] == [
        f"{r['context_options'][r['gold']]} {r['continuation']}" for r in records]
    assert task.recipe.to_qa(records[0]) == (records[0]["context_options"][records[0]["gold"]],
                                             records[0]["continuation"])


def test_builtins_are_shipped_task_files():
    files = sorted(BUILTIN_TASKS_DIR.glob("*.yaml"))
    builtins = list_tasks()
    assert sorted(Path(t.file) for t in builtins) == files and len(files) == 17
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["matrixeval"]
    shipped = {p for pattern in patterns for p in (ROOT / "src" / "matrixeval").glob(pattern)}
    assert set(files) <= shipped
    assert {"dolly_text", "pydoc_topic_records", "openbookqa_qa"} <= set(FUNCTIONS)


def test_ls_lists_user_tasks_beside_builtins(tmp_path, capsys):
    data = shared_file("piqa/valid_labeled.jsonl")
    path = _write(tmp_path, "g.yaml", f"task: piqa_goals\ndataset_path: {data}\ndoc_to_text: goal\n"
                                      "description: PIQA goals alone\n")
    assert main(["ls", "--include_path", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = [line for line in lines if line.strip().startswith("piqa_goals ")]
    assert len(mine) == 1 and f"[user task, {path}]" in mine[0] and "PIQA goals alone" in mine[0]
    assert any(line.strip().startswith("piqa ") and "user task" not in line for line in lines)


def test_task_names_collide_with_one_line(tmp_path):
    data = shared_file("piqa/valid_labeled.jsonl")
    _write(tmp_path / "a", "x.yaml", f"task: piqa\ndataset_path: {data}\n")
    with pytest.raises(MatrixEvalError, match=r"task file .*x\.yaml: task: 'piqa' is the name of a built-in"):
        parse_task_specs("piqa", tmp_path / "a")
    _write(tmp_path / "b", "one.yaml", f"task: mine\ndataset_path: {data}\n")
    _write(tmp_path / "b", "two.yml", f"task: mine\ndataset_path: {data}\n")
    with pytest.raises(MatrixEvalError, match=r"two\.yml: task: 'mine' is defined in .*one\.yaml too"):
        include_tasks(tmp_path / "b")


BAD = [  # (file name, content, key the error names, words of the message)
    ("syntax.yaml", "task: x\ndoc_to_text: [unclosed\n", None, "invalid YAML at line"),
    ("notask.yaml", "dataset_path: data.jsonl\ndoc_to_text: text\n", "task", "missing"),
    ("badtype.yaml", "task: x\nmin_tokens: ten\n", "min_tokens", "expected an integer"),
    ("misspelt.yaml", "task: x\ndoc_to_txt: text\n", "doc_to_txt", "did you mean 'doc_to_text'?"),
    ("template.yaml", "task: x\ndoc_to_text: '{{ goal '\n", "doc_to_text", "Jinja2 template error"),
    ("func.yaml", "task: x\ndoc_to_text: !function dolly_txt\n", "doc_to_text", "did you mean 'dolly_text'?"),
    ("output.yaml", "task: x\noutput_type: loglikelihood_rollin\n", "output_type",
     "did you mean 'loglikelihood_rolling'?"),
    ("badjson.json", '{"task": "x", "doc_to_text": }', None, "invalid JSON at line 1"),
    ("nodata.yaml", "task: x\ndataset_path: data/dev.jsonl\n", "dataset_path", "'data/dev.jsonl' not found"),
    ("nofile.yaml", "task: x\ndataset_path: json\ndataset_kwargs: {data_files: nope.jsonl}\n",
     "dataset_kwargs.data_files", "'nope.jsonl' not found"),
    ("qa.yaml", "task: x\ndoc_to_qa: [question]\n", "doc_to_qa", "expected [QUESTION, ANSWER]"),
    ("sizes.yaml", "task: x\nmin_tokens: 9\nmax_tokens: 3\n", "min_tokens", "more than max_tokens 3"),
    ("tasklist.yaml", "task: [a, b]\n", "task", "expected a name"),
]


@pytest.mark.parametrize(("name", "content", "key", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_task_file_is_one_line_naming_file_and_key(tmp_path, name, content, key, words):
    path = _write(tmp_path / "tasks", name, content)
    with pytest.raises(MatrixEvalError) as info:
        read_task_file(path)
    msg = str(info.value)
    assert msg.startswith(f"task file {path}: {key + ': ' if key else ''}") and words in msg and "\n" not in msg


def test_bad_task_files_from_the_command_line(tmp_path):
    # `ls --include_path` and `run --tasks FILE.yaml`: stderr is the one error line, naming file and key.
    misspelt = _write(tmp_path / "t", "m.yaml", "task: x\ndoc_to_txt: text\n")
    line = _one_error(_cli("ls", "--include_path", tmp_path / "t", cwd=tmp_path))
    assert line == f"matrixeval: error: task file {misspelt}: doc_to_txt: unknown key; did you mean 'doc_to_text'?"
    data = shared_file("piqa/valid_labeled.jsonl")
    wrong = _write(tmp_path, "w.yaml", f"task: w\ndataset_path: {data}\ndoc_to_text: choices.0.text\n")
    line = _one_error(_cli("run", "--tasks", wrong, cwd=tmp_path))
    assert f"{data}:1: task 'w' needs field path 'choices.0.text'" in line
    assert f"(read by {wrong}: doc_to_text)" in line
    template = _write(tmp_path, "t.yaml", f"task: t\ndataset_path: {data}\ndoc_to_text: '{{{{ question }}}}'\n")
    line = _one_error(_cli("run", "--tasks", template, cwd=tmp_path))
    assert "'question' is undefined in doc_to_text's template" in line and f"{template}: doc_to_text" in line
    assert not (tmp_path / "results").exists()


def test_deeply_nested_jsonl_is_one_line(tmp_path):
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    line = _one_error(_cli("run", "--tasks", deep, cwd=tmp_path))
    assert line == f"matrixeval: error: {deep}:1: JSON nested too deeply to read (more levels than Python's recursion limit)"
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MatrixEvalError, match="nested too deeply"):
        load_task(parse_task_specs(str(deep_json))[0])


def test_run_measures_a_task_file_with_its_context_and_metrics(tiny_root, tmp_path):
    from matrixeval import evaluate
    from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm

    model = make_tiny_causal_lm(tiny_root, "gpt2")
    data = tmp_path / "pairs.jsonl"
    pairs = [{"q": {"text": TINY_TEXTS[i]}, "a": TINY_TEXTS[i + 1]} for i in range(4)]
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    _write(tmp_path / "t", "pairs.yaml", "task: pairs\ndataset_path: ../pairs.jsonl\ndoc_to_context: q.text\n"
                                         "doc_to_text: '{{ a }}'\nmetrics: [matrix_entropy, loss]\n")
    out = evaluate(f"pretrained={model}", "pairs", include_path=[str(tmp_path / "t")], output_path=tmp_path / "out",
                   log_samples=True)
    assert out["config"]["metrics"] == ["matrix_entropy", "loss"] and out["results"]["pairs"]["n_samples"] == 4
    assert out["config"]["task_files"] == {"pairs": str(tmp_path / "t" / "pairs.yaml")}
    rows = [json.loads(line) for line in open(next((tmp_path / "out").rglob("samples_pairs_*.jsonl")))]
    assert [(r["context"], r["doc"]) for r in sorted(rows, key=lambda r: r["doc_id"])] == [
        (p["q"]["text"], p["a"]) for p in pairs]
    # only the text's tokens are measured: as many as the text alone tokenises to
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    by_id = {r["doc_id"]: r for r in rows}
    for i, p in enumerate(pairs):
        text, context = (len(tok(x, add_special_tokens=False)["input_ids"]) for x in (p["a"], p["q"]["text"]))
        (layer,) = by_id[i]["layers"].values()
        assert by_id[i]["n_targets"] == layer["n_tokens"] == text and by_id[i]["n_input_tokens"] >= text + context


def test_templates_render_in_jinja_sandbox(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n", encoding="utf-8")
    path = _write(tmp_path, "s.yaml", f"task: s\ndataset_path: {data}\n"
                                      "doc_to_text: '{{ text.__class__.__mro__[1].__subclasses__() }}'\n")
    with pytest.raises(MatrixEvalError, match=r"d\.jsonl:1: task 's' cannot read this record \(read by .*s\.yaml: "
                                              r"doc_to_text\) \(ValueError: doc_to_text's template: access to"):
        load_task(parse_task_specs(str(path))[0])


def test_include_path_reaches_every_experiment(tmp_path):
    from matrixeval.cli import build_parser
    from matrixeval.experiments import EXPERIMENTS, _common as common

    data = shared_file("piqa/valid_labeled.jsonl")
    _write(tmp_path / "a", "g.yaml", f"task: goals\ndataset_path: {data}\ndoc_to_text: goal\n")
    _write(tmp_path / "b", "s.yaml", f"task: sols\ndataset_path: {data}\ndoc_to_text: sol1\n")
    parser = build_parser()
    for name in EXPERIMENTS:
        if name == "multimodal":  # image tasks of its own, no shared task flags
            continue
        required = {"adapter": ["--train"], "checkpoints": ["--checkpoints", "x"]}.get(name, [])
        args = parser.parse_args(["experiment", name, *required, "--include_path", str(tmp_path / "a"),
                                  "--include_path", f"{tmp_path / 'b'},{tmp_path / 'a'}"])
        opts = common.options(common.options_from_args(args))
        assert opts.include_path == [str(tmp_path / "a"), f"{tmp_path / 'b'},{tmp_path / 'a'}"], name
    goals, sols = common.load_tasks("goals,sols", opts, limit=3)
    records = read_jsonl(data)[:3]
    assert [d.text for d in goals.documents] == [r["goal"] for r in records]
    assert [d.text for d in sols.documents] == [r["sol1"] for r in records]


def test_an_lm_eval_perplexity_task_file_reads_as_written(tmp_path, caplog):
    # lm-eval's wikitext.yaml layout (its data swapped for the shared lines file): rolling over doc_to_target.
    lines = shared_file("wikitext-2/test_lines.jsonl")
    path = _write(tmp_path, "wikitext.yaml", f"""
task: wikitext_lines
dataset_path: json
dataset_kwargs:
  data_files: {{test: {lines}}}
  trust_remote_code: true
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{ text }}}}"
process_results: !function preprocess_wikitext.process_results
should_decontaminate: true
doc_to_decontamination_query: "{{{{page}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 2.0
""")
    with caplog.at_level(logging.WARNING, logger="matrixeval.data.taskfile"):
        recipe = read_task_file(path)
    assert recipe.rolling and set(recipe.metrics or ()) <= {"word_perplexity", "byte_perplexity", "bits_per_byte"}
    ignored = [r.getMessage() for r in caplog.records if "ignoring lm-eval keys" in r.getMessage()]
    assert ignored == [f"task file {path}: ignoring lm-eval keys matrixeval does not use: process_results, "
                       "should_decontaminate, doc_to_decontamination_query, metadata"]
    task = load_task(TaskSpec(recipe.name, recipe=recipe), limit=40)
    assert [d.text for d in task.documents] == [r["text"] for r in read_jsonl(lines)[:40]]


def test_a_path_that_fails_on_the_first_record_is_an_error_even_when_skipping(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ({"body": "a"}, {"text": "b"})), encoding="utf-8")
    path = _write(tmp_path, "p.yaml", f"task: p\ndataset_path: {data}\ndoc_to_text: text\n")
    with pytest.raises(MatrixEvalError, match=rf"d\.jsonl:1: task 'p' needs field .*\(read by {path}: doc_to_text\)"):
        load_task(parse_task_specs(str(path))[0], on_error="skip")
    data.write_text("".join(json.dumps(r) + "\n" for r in ({"text": "a"}, {"body": "b"})), encoding="utf-8")
    task = load_task(parse_task_specs(str(path))[0], on_error="skip")  # a later bad record is skipped, counted
    assert [d.text for d in task.documents] == ["a"] and task.skipped == {"missing_field": 1}
