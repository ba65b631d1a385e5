"""Every local layout (.tsv, gzip, .json columns, datasets folders, .txt splits) and field paths, on the real
files in shared/data and on files written here; each checked against the file parsed independently."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from matrixeval.data import TaskSpec, load_task, parse_task_specs
from matrixeval.errors import MatrixEvalError

from .conftest import read_jsonl, shared_file, write_jsonl


def _texts(task):
    return [d.text for d in task.documents]


def test_openbookqa_tsv_matches_tab_split_lines():
    path = shared_file("openbookqa/dev.tsv")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
    assert len(rows) == 500 and all(len(r) == len(header) for r in rows)
    task = load_task(parse_task_specs(f"obqa={path}:Question Stem")[0])
    assert _texts(task) == [r["Question Stem"] for r in rows]
    assert [d.record["ID"] for d in task.documents] == [r["ID"] for r in rows]
    assert [d.doc_id for d in task.documents] == list(range(500))


def test_tsv_quotes_are_characters_and_extra_fields_are_malformed(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text('id\ttext\n1\t"quoted" start\n2\ttoo\tmany\n3\tfine\n', encoding="utf-8")
    with pytest.raises(MatrixEvalError, match=r"x\.tsv:3: 3 fields, the header names 2"):
        load_task(TaskSpec("x", str(path)), text_field="text")
    task = load_task(TaskSpec("x", str(path)), text_field="text", on_error="skip")
    assert _texts(task) == ['"quoted" start', "fine"] and task.skipped == {"malformed_line": 1}


def _wikitext_articles(text: str) -> list[list[str]]:
    """Independent split: a line starting ' = ' but not ' = = ' opens an article."""
    articles: list[list[str]] = []
    for line in text.split("\n")[:-1]:
        if line.startswith(" = ") and not line.startswith(" = = ") and line.endswith(" = "):
            articles.append([])
        if articles:
            articles[-1].append(line)
    return articles


def test_wikitext_split_gives_one_document_per_article():
    path = shared_file("wikitext-2/test.txt")
    text = path.read_text(encoding="utf-8")
    articles = _wikitext_articles(text)
    task = load_task(TaskSpec("wiki", str(path)), txt_split="wikitext")
    assert len(articles) == 62 and len(task.documents) == 62  # lm-eval's wikitext_document_level test split
    assert _texts(task) == ["\n".join(a) for a in articles]  # heading and blank lines kept, nothing else lost
    preamble = text[: text.index(articles[0][0])]
    assert preamble.strip() == "" and task.skipped == {"empty_text": 1} and task.n_records == 63


def test_txt_line_split_counts_blank_lines():
    path = shared_file("wikitext-2/test.txt")
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    task = load_task(TaskSpec("wiki", str(path)), txt_split="line")
    assert _texts(task) == [line for line in lines if line.strip()]
    assert task.skipped == {"empty_text": sum(not line.strip() for line in lines)}
    assert task.n_records == len(lines)
    assert [d.doc_id for d in task.documents][:3] == [i for i, line in enumerate(lines) if line.strip()][:3]


def test_txt_blank_split_and_unknown_split(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("a\nb\n\n\nc\n", encoding="utf-8")
    assert _texts(load_task(TaskSpec("x", str(path)), txt_split="blank")) == ["a\nb", "c"]
    with pytest.raises(MatrixEvalError, match="unknown txt split 'pages'; use one of blank, line, wikitext"):
        load_task(TaskSpec("x", str(path)), txt_split="pages")


def test_arena_hard_nested_field_path():
    path = shared_file("arena-hard/question.jsonl")
    expected = [r["turns"][0]["content"] for r in read_jsonl(path)]
    task = load_task(parse_task_specs(f"ah={path}:turns.0.content")[0])
    assert _texts(task) == expected and len(expected) == 500
    with pytest.raises(MatrixEvalError, match=r"question\.jsonl:1: .*'turns\.1\.content'.*list of 1"):
        load_task(TaskSpec("ah", str(path)), text_field="turns.1.content")


def test_bad_path_names_line_and_path(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"choices": [{"turns": [{"content": "x"}]}]}, {"choices": []}])
    with pytest.raises(MatrixEvalError, match=r"a\.jsonl:2: .*'choices\.0\.turns\.0\.content'.*list of 0"):
        load_task(TaskSpec("a", str(path)), text_field="choices.0.turns.0.content")
    with pytest.raises(MatrixEvalError, match=r"a\.jsonl:1: .*no field 'answer' in choices\.0"):
        load_task(TaskSpec("a", str(path)), text_field="choices.0.answer")


def test_per_task_fields_in_specs(tmp_path):
    f1 = write_jsonl(tmp_path / "f1.jsonl", [{"choices": [{"turns": [{"content": "c1"}]}], "text": "t1"}])
    f2 = write_jsonl(tmp_path / "f2.jsonl", [{"output": "o2", "text": "t2"}])
    specs = parse_task_specs(f"a={f1}:choices.0.turns.0.content,b={f2},{f2}:output")
    assert specs == [TaskSpec("a", str(f1), "choices.0.turns.0.content"), TaskSpec("b", str(f2)),
                     TaskSpec("f2", str(f2), "output")]
    assert [_texts(load_task(s, text_field="text")) for s in specs] == [["c1"], ["t2"], ["o2"]]
    with pytest.raises(MatrixEvalError, match="empty field after ':'"):
        parse_task_specs(f"a={f1}:")


def test_gzip_files_match_their_plain_content(tmp_path):
    records = [{"id": i, "doc": {"body": f"text number {i}"}} for i in range(5)]
    with gzip.open(tmp_path / "x.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    with gzip.open(tmp_path / "y.json.gz", "wt", encoding="utf-8") as fh:
        json.dump({"rows": records}, fh)
    for name in ("x.jsonl.gz", "y.json.gz"):
        spec = parse_task_specs(f"{tmp_path / name}:doc.body")[0]
        assert spec.name == name.split(".")[0]
        assert _texts(load_task(spec)) == [r["doc"]["body"] for r in records]
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(MatrixEvalError, match=r"bad\.jsonl\.gz: could not decompress"):
        load_task(TaskSpec("bad", str(tmp_path / "bad.jsonl.gz")))


def test_json_object_of_columns(tmp_path):
    path = tmp_path / "c.json"
    columns = {"text": ["one", "two", "three"], "label": [0, 1, 0]}
    path.write_text(json.dumps(columns), encoding="utf-8")
    task = load_task(TaskSpec("c", str(path)))
    assert _texts(task) == columns["text"] and [d.record["label"] for d in task.documents] == columns["label"]


def test_datasets_save_to_disk_folder(tmp_path):
    import datasets

    records = {"q": ["a?", "b?", "c?"], "meta": [{"answer": "x"}, {"answer": "y"}, {"answer": "z"}]}
    datasets.Dataset.from_dict(records).save_to_disk(str(tmp_path / "ds"))
    task = load_task(parse_task_specs(f"mine={tmp_path / 'ds'}:meta.answer")[0])
    assert _texts(task) == ["x", "y", "z"]
    split = datasets.Dataset.from_dict({"text": ["only one"]})
    datasets.DatasetDict({"test": split, "train": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(MatrixEvalError, match="holds splits test, train; give one of them"):
        load_task(TaskSpec("dd", str(tmp_path / "dd")))
    assert _texts(load_task(TaskSpec("dd", str(tmp_path / "dd" / "test")))) == ["only one"]


def test_cli_bad_field_path_is_one_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"turns": [{"content": "x"}]}])
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--tasks", f"a={path}:turns.0.text"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("matrixeval: error: ") and "a.jsonl:1" in lines[0]
    assert "'turns.0.text'" in lines[0]


def test_log_samples_carry_document_hash_and_source(tiny_root, tmp_path):
    import hashlib

    from matrixeval import evaluate
    from tests.tiny_models import make_tiny_causal_lm

    path = shared_file("arena-hard/question.jsonl")
    records = read_jsonl(path)[:4]
    long = "x " * 1500  # 3000 characters: the samples row keeps the first 2000 and hashes the whole
    data = write_jsonl(tmp_path / "q.jsonl", [*records, {"id": 7, "turns": [{"content": long}]}])
    evaluate(f"pretrained={make_tiny_causal_lm(tiny_root, 'gpt2')}", f"q={data}:turns.0.content", max_length=16,
             metrics="matrix_entropy", output_path=tmp_path / "out", log_samples=True)
    rows = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_q_*.jsonl")).open()]
    texts = [r["turns"][0]["content"] for r in records] + [long]
    assert [r["doc_id"] for r in rows] == list(range(5))
    assert [r["doc"] for r in rows] == [t[:2000] for t in texts] and len(rows[-1]["doc"]) == 2000
    assert [r["doc_chars"] for r in rows] == [len(t) for t in texts]
    assert [r["doc_sha256"] for r in rows] == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    assert [r["source_id"] for r in rows] == [r["question_id"] for r in records] + [7]
    assert [r["source"] for r in rows] == [f"{data}:{i}" for i in range(1, 6)]


def test_every_experiments_samples_carry_their_documents(tiny_root, tmp_path):
    """Not only run's: an experiment's --log_samples rows name the (transformed) document each row measured."""
    import hashlib

    from matrixeval.data.transforms import apply_sentence_op
    from matrixeval.experiments.sentence_ops import sentence_ops_experiment
    from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm

    texts = [f"{TINY_TEXTS[i].capitalize()}. {TINY_TEXTS[i + 1].capitalize()}." for i in range(4)]
    data = write_jsonl(tmp_path / "s.jsonl", [{"text": t, "id": f"r{i}"} for i, t in enumerate(texts)])
    sentence_ops_experiment(f"pretrained={make_tiny_causal_lm(tiny_root, 'gpt2')}", f"s={data}", ops="base,shuffle",
                            metrics="matrix_entropy", output_path=tmp_path / "out", log_samples=True, seed=5)
    rows = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_s__shuffle_*.jsonl")).open()]
    shuffled = [apply_sentence_op(t, "shuffle", 5) for t in texts]
    assert [r["doc"] for r in rows] == shuffled
    assert [r["doc_sha256"] for r in rows] == [hashlib.sha256(t.encode()).hexdigest() for t in shuffled]
    assert [r["source_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
