"""Hub recipes (with `datasets.load_dataset` replaced by an in-memory data set), sampling, limits."""

import dataclasses
import os
import random
import subprocess
import sys

import pytest

from matrixeval.data import TaskSpec, get_task, load_task, registry
from matrixeval.errors import MatrixEvalError

from .conftest import write_jsonl

datasets = pytest.importorskip("datasets")


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def install(records):
        def load_dataset(path, name=None, split=None):
            calls.append((path, name, split))
            return datasets.Dataset.from_list(records)

        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
        return calls

    return install


@pytest.fixture
def small_sample(monkeypatch):
    """Registry with `wikipedia` sampling 5 records instead of 10,000."""
    table = dict(registry._REGISTRY)
    table["wikipedia"] = dataclasses.replace(table["wikipedia"], sample_size=5)
    monkeypatch.setattr(registry, "_REGISTRY", table)


def test_hub_recipe_loads_with_its_location(fake_hub):
    records = [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: a{i}", "rejected": "x"} for i in range(4)]
    calls = fake_hub(records)
    task = load_task(TaskSpec("hh_rlhf"))
    assert calls == [("Anthropic/hh-rlhf", None, "test")]
    assert task.source == "Anthropic/hh-rlhf" and task.recipe is get_task("hh_rlhf")
    assert [d.text for d in task.documents] == [r["chosen"] for r in records]
    assert [d.doc_id for d in task.documents] == [0, 1, 2, 3]


def test_hub_limit_stops_reading(fake_hub):
    fake_hub([{"instruction": "i", "context": "" if i % 2 else f"c{i}", "response": "r"} for i in range(10)])
    task = load_task(TaskSpec("dolly"), limit=2)
    assert [(d.doc_id, d.text) for d in task.documents] == [(0, "c0"), (2, "c2")]
    assert task.n_records == 3 and task.skipped == {"no_text_from_recipe": 1}


def test_hub_failure_is_one_line_and_points_to_a_local_copy(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Anthropic/hh-rlhf' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MatrixEvalError) as info:
        load_task(TaskSpec("piqa"))
    msg = str(info.value)
    assert "\n" not in msg and "could not load data set 'ybisk/piqa'" in msg
    assert "pass a local copy with piqa=LOCAL_FILE" in msg


def test_real_offline_hub_failure():
    code = "from matrixeval.data import TaskSpec, load_task\nload_task(TaskSpec('hh_rlhf'))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "MatrixEvalError: could not load data set 'Anthropic/hh-rlhf'" in out.stderr
    assert "hh_rlhf=LOCAL_FILE" in out.stderr


def test_hub_sampling_is_seeded_and_ids_are_source_indices(fake_hub, small_sample):
    records = [{"id": str(i), "title": f"t{i}", "text": f"article {i}"} for i in range(50)]
    fake_hub(records)
    task = load_task(TaskSpec("wikipedia"), seed=7)
    expected = random.Random(7).sample(range(50), 5)
    assert [d.doc_id for d in task.documents] == expected
    assert all(d.text == records[d.doc_id]["text"] for d in task.documents)
    assert task.n_records == 5
    assert load_task(TaskSpec("wikipedia"), seed=7).documents == task.documents
    assert [d.doc_id for d in load_task(TaskSpec("wikipedia"), seed=8).documents] != expected
    assert load_task(TaskSpec("wikipedia"), seed=7, limit=3).documents == task.documents[:3]


def test_sampling_applies_to_a_local_copy(tmp_path, small_sample):
    records = [{"text": f"line {i}" if i % 3 else ""} for i in range(30)]
    path = write_jsonl(tmp_path / "wiki.jsonl", records)
    task = load_task(TaskSpec("wikipedia", str(path)), seed=1)
    drawn = random.Random(1).sample(range(30), 5)
    assert [d.doc_id for d in task.documents] == [i for i in drawn if i % 3]
    assert task.n_records == 5 and task.skipped.get("empty_text", 0) == sum(1 for i in drawn if not i % 3)


def test_sample_larger_than_source_takes_everything_shuffled(fake_hub):
    fake_hub([{"text": f"page {i}"} for i in range(20)])
    task = load_task(TaskSpec("openwebtext2"), seed=3)
    assert sorted(d.doc_id for d in task.documents) == list(range(20))
    assert [d.doc_id for d in task.documents] == random.Random(3).sample(range(20), 20)


def _reference_indices(n: int, size: int, seed: int) -> list[int]:
    """The papers' code, as written there: the module-level generator seeded, then random.sample."""
    state = random.getstate()
    try:
        random.seed(seed)
        return random.sample(range(n), size)
    finally:
        random.setstate(state)


def test_sample_size_and_sample_seed_choose_the_sample_and_seed_does_not(fake_hub):
    records = [{"text": f"article {i}"} for i in range(300)]
    fake_hub(records)
    task = load_task(TaskSpec("wikipedia"), sample_size=40, sample_seed=9)
    assert [d.doc_id for d in task.documents] == _reference_indices(300, 40, 9)
    assert task.sample == (40, 9) and task.n_records == 40
    # the default draw: 10,000 (capped to the 300 records) with seed 1234, whatever the run's --seed
    default = load_task(TaskSpec("wikipedia"))
    assert default.sample == (10_000, 1234)
    assert [d.doc_id for d in default.documents] == _reference_indices(300, 300, 1234)
    assert load_task(TaskSpec("wikipedia"), sample_size=40, sample_seed=10).documents != task.documents
    # sample_size/sample_seed apply to sampling recipes only
    fake_hub([{"chosen": f"\n\nHuman: q{i}\n\nAssistant: a{i}"} for i in range(5)])
    hh = load_task(TaskSpec("hh_rlhf"), sample_size=2, sample_seed=3)
    assert hh.sample is None and [d.doc_id for d in hh.documents] == [0, 1, 2, 3, 4]
    with pytest.raises(MatrixEvalError, match="sample_size must be a positive number"):
        load_task(TaskSpec("wikipedia"), sample_size=0)


def test_reference_variants_draw_exactly_the_reference_codes_indices(fake_hub):
    records = [{"text": f"page {i}"} for i in range(25_000)]
    calls = fake_hub(records)
    task = load_task(TaskSpec("openwebtext2_reference"))
    assert calls == [("suolyer/pile_openwebtext2", None, "validation")]
    assert task.sample == (10_000, 123) and len(task.documents) == 10_000
    assert [d.doc_id for d in task.documents] == _reference_indices(25_000, 10_000, 123)
    assert all(d.text == records[d.doc_id]["text"] for d in task.documents[:50])
    wiki = load_task(TaskSpec("wikipedia_reference"), limit=5)
    assert calls[-1] == ("wikipedia", "20220301.en", "train")
    assert [d.doc_id for d in wiki.documents] == _reference_indices(25_000, 10_000, 123)[:5]
    # an explicit --sample_seed still wins over the recipe's own
    assert load_task(TaskSpec("openwebtext2_reference"), sample_seed=5, sample_size=3).sample == (3, 5)


def test_reference_variant_on_a_local_copy(tmp_path):
    path = write_jsonl(tmp_path / "owt.jsonl", [{"text": f"web {i}"} for i in range(12_000)])
    task = load_task(TaskSpec("openwebtext2_reference", str(path)), limit=20)
    assert [d.doc_id for d in task.documents] == _reference_indices(12_000, 10_000, 123)[:20]


def test_open_corpus_reads_every_record_and_takes_only_the_drawn(fake_hub, tmp_path):
    from matrixeval.data import open_corpus

    fake_hub([{"text": f"article {i}" if i % 7 else ""} for i in range(50)])
    corpus = open_corpus(TaskSpec("wikipedia"))  # the whole split, not the recipe's sample
    assert len(corpus) == 50
    task = corpus.take([21, 3, 14, 3, 8])
    assert [d.doc_id for d in task.documents] == [3, 8]  # 14 and 21 have no text: dropped and counted
    assert task.skipped == {"empty_text": 2} and task.n_records == 4
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "" if i in (1, 4) else f"line {i}"} for i in range(10)])
    limited = open_corpus(TaskSpec("d", str(path)), limit=5)  # records up to the 5th usable document
    assert len(limited) == 7
    assert [d.doc_id for d in limited.take(range(7)).documents] == [0, 2, 3, 5, 6]


def test_cli_sample_flags_reach_the_draw_and_the_config(fake_hub, tiny_root, tmp_path):
    import json

    from matrixeval.cli import main
    from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm

    gpt2 = make_tiny_causal_lm(tiny_root, "gpt2")
    fake_hub([{"text": TINY_TEXTS[i % len(TINY_TEXTS)] + f" {i}"} for i in range(40)])
    argv = ["run", "--model_args", f"pretrained={gpt2}", "--tasks", "wikipedia", "--sample_size", "6",
            "--sample_seed", "5", "--metrics", "matrix_entropy", "--log_samples"]
    assert main(argv + ["--seed", "1", "--output_path", str(tmp_path / "a")]) == 0
    assert main(argv + ["--seed", "2", "--output_path", str(tmp_path / "b")]) == 0
    ids = []
    for run in ("a", "b"):
        config = json.loads(next((tmp_path / run).rglob("results_*.json")).read_text())["config"]
        assert config["samples"] == {"wikipedia": [6, 5]}
        lines = next((tmp_path / run).rglob("samples_wikipedia_*.jsonl")).read_text().splitlines()
        ids.append(sorted(json.loads(line)["doc_id"] for line in lines))
    assert ids[0] == ids[1] == sorted(_reference_indices(40, 6, 5))  # --seed does not move the sample
