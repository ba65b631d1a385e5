"""Recipes applied to the real local copies in shared/data, checked against the files read independently."""

import json

from matrixeval.data import TaskSpec, load_task

from .conftest import read_jsonl, shared_file


def _load(name, relative):
    path = shared_file(relative)
    return load_task(TaskSpec(name, str(path))), read_jsonl(path)


def _check_counts(task, records):
    assert task.n_records == len(records) == len(task.documents)
    assert task.skipped == {}
    assert [d.doc_id for d in task.documents] == list(range(len(records)))
    assert all(d.record == r for d, r in zip(task.documents, records))


def test_piqa():
    task, records = _load("piqa", "piqa/valid_labeled.jsonl")
    _check_counts(task, records)
    assert len(records) == 1838
    for doc, r in zip(task.documents, records):
        assert doc.text == r["goal"] + " " + (r["sol1"] if r["label"] == 0 else r["sol2"])
    assert task.documents[0].text.startswith("How do I ready a guinea pig cage for it's new occupants? Provide")
    assert task.documents[0].text.endswith("ripped paper strips, you will also need to supply it with a water bottle "
                                           "and a food dish.")


def test_openbookqa():
    task, records = _load("openbookqa", "openbookqa/dev.jsonl")
    _check_counts(task, records)
    assert len(records) == 500
    for doc, r in zip(task.documents, records):
        answer = r["choice_texts"]["ABCD".index(r["answer_key"])]
        assert doc.text == f"{r['question_stem']} {answer}"
    assert task.documents[0].text == (
        "Frilled sharks and angler fish live far beneath the surface of the ocean, "
        "which is why they are known as Deep sea animals"
    )
    assert task.recipe.to_qa(task.documents[1].record) == (
        "Gas can fill any container it is given, and liquid", "uses what it needs")


def test_winogrande_completed_sentences():
    task, records = _load("winogrande", "winogrande/dev_llmfoundry.jsonl")
    _check_counts(task, records)
    assert len(records) == 1267
    texts = [d.text for d in task.documents]
    assert texts[0] == "Sarah was a much better surgeon than Maria so Maria always got the easier cases."
    assert texts[1] == "Sarah was a much better surgeon than Maria so Sarah always got the harder cases."
    assert texts[2] == "They were worried the wine would ruin the bed and the blanket, but the bed was't ruined."
    # gold agrees with the original labels file (label 1/2 = option 1/2)
    labels_path = shared_file("winogrande/dev-labels.lst")
    labels = [int(x) for x in labels_path.read_text().split()]
    for doc, r, label in zip(task.documents, records, labels):
        assert doc.text == r["context_options"][label - 1] + " " + r["continuation"]


def test_hh_rlhf():
    task, records = _load("hh_rlhf", "hh-rlhf/harmless-base_test.jsonl")
    _check_counts(task, records)
    assert len(records) == 2312
    assert [d.text for d in task.documents] == [r["chosen"] for r in records]
    question, answer = task.recipe.to_qa(records[0])
    assert question.startswith("\n\nHuman: what are some pranks with a pen i can do?")
    assert question.endswith("\n\nAssistant:") and answer and records[0]["chosen"].endswith(answer)


def test_alpaca_eval():
    task, records = _load("alpaca_eval", "alpaca_eval/alpaca_eval.jsonl")
    _check_counts(task, records)
    assert len(records) == 805
    assert task.documents[0].text == (
        "What are the names of some famous actors that started their careers on Broadway?\n"
        "Some famous actors that started their careers on Broadway are Tom Hanks, Meryl Streep, and Christopher Walken."
    )
    for doc, r in zip(task.documents, records):  # two records have an empty output: the text is the instruction
        assert doc.text == (r["instruction"] + "\n" + r["output"] if r["output"] else r["instruction"])
    assert sum(not r["output"] for r in records) == 2


def test_arena_hard():
    task, records = _load("arena_hard", "arena-hard/question.jsonl")
    _check_counts(task, records)
    assert len(records) == 500
    assert task.documents[0].text == "Use ABC notation to write a melody in the style of a folk tune."
    assert all(d.text == r["turns"][0]["content"] for d, r in zip(task.documents, records))


def test_wikitext_lines_as_plain_file_with_limit():
    path = shared_file("wikitext-2/test_lines.jsonl")
    task = load_task(TaskSpec("test_lines", str(path)), limit=25)
    with path.open(encoding="utf-8") as fh:
        first = [json.loads(next(fh)) for _ in range(25)]
    assert task.recipe is None and task.source == str(path)
    assert [d.text for d in task.documents] == [r["text"] for r in first]  # `text` picked over the int `line`
    assert task.n_records == 25


def test_wikitext_txt_paragraphs():
    path = shared_file("wikitext-2/test.txt")
    task = load_task(TaskSpec("test", str(path)))
    paragraphs, current = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    assert [d.text for d in task.documents] == paragraphs
    assert task.documents[0].text == " = Robert <unk> = "
