"""sampling: fresh subsets of the whole corpus, each subset's values exactly what its own records give."""

import json
import math
import random
import subprocess
import sys

import pytest

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.sampling import parse_sizes, sampling_experiment

from .conftest import check_outputs, samples

COLUMNS = ["task", "size", "n_seeds", "n_samples_min", "matrix_entropy_mean", "matrix_entropy_std",
           "loss_mean", "loss_std"]


def _independent_draw(n: int, size: int, seed: int, index: int) -> set[int]:
    return set(random.Random(f"{seed}:{size}:{index}").sample(range(n), size))


def test_subset_values_equal_means_of_their_records(gpt2_path, tiny_corpus, tmp_path):
    out = sampling_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), sizes="5,10", n_seeds=4,
                              metrics="matrix_entropy,loss", seed=7, sample_seed=11, output_path=tmp_path,
                              log_samples=True)
    check_outputs(out, COLUMNS)
    by_id = {r["doc_id"]: r for r in samples(out, "tiny")}
    hidden = out["config"]["hidden_size"]
    for size in (5, 10):
        subs = [s for s in out["subsets"]["tiny"] if s["size"] == size]
        assert len(subs) == 4 and all(len(s["doc_ids"]) == size for s in subs)
        # the subsets are the independent draws of Python's random with the documented seed strings
        assert [set(s["doc_ids"]) for s in subs] == [_independent_draw(20, size, 11, i) for i in range(4)]
        direct = []
        for s in subs:
            recs = [by_id[i] for i in s["doc_ids"]]
            ent = sum(r["layers"]["3"]["entropy"] for r in recs) / size / math.log(hidden)
            assert s["matrix_entropy"] == pytest.approx(ent, abs=1e-12)
            assert s["loss"] == pytest.approx(sum(r["loss"] for r in recs) / size, abs=1e-12)
            direct.append(ent)
        row = next(r for r in out["table"] if r["size"] == size)
        mean = sum(direct) / len(direct)
        std = math.sqrt(sum((d - mean) ** 2 for d in direct) / (len(direct) - 1))
        assert row["matrix_entropy_mean"] == pytest.approx(mean, abs=1e-12)
        assert row["matrix_entropy_std"] == pytest.approx(std, abs=1e-12)
        assert row["n_samples_min"] == size
    union = set().union(*(s["doc_ids"] for s in out["subsets"]["tiny"]))
    assert {r["doc_id"] for r in samples(out, "tiny")} == union  # only the drawn documents are measured
    assert out["corpus"] == {"tiny": 20} and out["capped"] == {}


def test_subsets_are_fresh_draws_of_the_whole_corpus_not_of_one_pool(gpt2_path, tmp_path):
    """A corpus larger than any subset: each size is its own draw over all records; --seed does not move them."""
    corpus = tmp_path / "big.jsonl"
    words = ["cat", "sat", "mat", "dog", "ran", "far", "the", "a"]
    rng = random.Random(1)
    corpus.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(6))}) + "\n"
                              for _ in range(400)))
    kw = dict(sizes="30:2,60", n_seeds=1, metrics="matrix_entropy", output_path=None, batch_size=32)
    a = sampling_experiment(f"pretrained={gpt2_path}", str(corpus), seed=1, **kw)
    b = sampling_experiment(f"pretrained={gpt2_path}", str(corpus), seed=2, **kw)
    subs = {(s["size"], s["seed_index"]): set(s["doc_ids"]) for s in a["subsets"]["big"]}
    assert sorted(subs) == [(30, 0), (30, 1), (60, 0)]
    for key, chosen in subs.items():
        assert chosen == _independent_draw(400, key[0], 1234, key[1])
    assert not subs[(30, 0)] <= subs[(60, 0)] and not subs[(30, 1)] <= subs[(60, 0)]  # not sub-subsets
    assert max(set().union(*subs.values())) > 300  # drawn from all 400 records
    assert [s["doc_ids"] for s in b["subsets"]["big"]] == [s["doc_ids"] for s in a["subsets"]["big"]]
    c = sampling_experiment(f"pretrained={gpt2_path}", str(corpus), sample_seed=5, **kw)
    assert [s["doc_ids"] for s in c["subsets"]["big"]] != [s["doc_ids"] for s in a["subsets"]["big"]]


def test_parse_sizes():
    assert parse_sizes("10000:3,15000,20000:1", 1) == [(10000, 3), (15000, 1), (20000, 1)]
    assert parse_sizes("50,10", 5) == [(10, 5), (50, 5)]
    for bad, match in (("10:0", "SIZE:N"), ("x", "SIZE:N"), ("10,10:2", "given twice")):
        with pytest.raises(MatrixEvalError, match=match):
            parse_sizes(bad, 5)


def test_cli_and_sizes_beyond_the_data_are_capped(gpt2_path, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "sampling", "--model_args", f"pretrained={gpt2_path}", "--tasks", str(tiny_corpus),
            "--sizes", "3,6,50", "--n_seeds", "2", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "matrix_entropy_std" in captured.out
    data = json.loads(next(tmp_path.rglob("sampling_*.json")).read_text())
    assert [r["size"] for r in data["table"]] == [3, 6, 20]
    assert [r["n_seeds"] for r in data["table"]] == [2, 2, 1]
    assert data["capped"] == {"tiny": {"50": 20}}
    assert main(argv[:-2] + ["--sample_size", "5", "--output_path", str(tmp_path)]) == 2
    assert "drop --sample_size" in capsys.readouterr().err


def test_cli_subprocess_default_sizes_capped_to_the_limit(tmp_path):
    """issue 13: `experiment sampling --limit 30` used to fail on the default size 100; now capped and said."""
    argv = [sys.executable, "-m", "matrixeval", "experiment", "sampling", "--limit", "12", "--sizes", "4,10,100",
            "--n_seeds", "2", "--metrics", "matrix_entropy", "--output_path", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "subset size 100 exceeds its corpus of 12 records; using 12 (the whole corpus, one subset)" in done.stderr
    data = json.loads(next(tmp_path.rglob("sampling_*.json")).read_text())
    assert [r["size"] for r in data["table"]] == [4, 10, 12]
    assert data["capped"] == {"pydoc_topics": {"100": 12}}
    whole = [s for s in data["subsets"]["pydoc_topics"] if s["size"] == 12]
    assert [s["doc_ids"] for s in whole] == [list(range(12))]  # the whole corpus, drawn once
    assert data["table"][-1]["n_seeds"] == 1 and data["table"][-1]["matrix_entropy_std"] is None


def test_hub_corpus_is_the_whole_split_not_the_recipes_sample(gpt2_path, monkeypatch, tmp_path):
    """With a stand-in for datasets.load_dataset: the subsets index the hub split's own records."""
    datasets = pytest.importorskip("datasets")
    words = ["cat", "sat", "mat", "dog", "ran"]
    records = [{"text": " ".join(words[(i + k) % 5] for k in range(4 + i % 3))} for i in range(3000)]
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(records)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = sampling_experiment(f"pretrained={gpt2_path}", "openwebtext2_reference", sizes="15:2,25", n_seeds=1,
                              metrics="matrix_entropy", output_path=tmp_path, log_samples=True, batch_size=32)
    assert calls == [("suolyer/pile_openwebtext2", None, "validation")]
    assert out["corpus"] == {"openwebtext2_reference": 3000}
    for s in out["subsets"]["openwebtext2_reference"]:
        assert set(s["doc_ids"]) == _independent_draw(3000, s["size"], 123, s["seed_index"])  # the recipe's seed
    # each measured document is the record at its doc_id: its token count matches the text's
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt2_path)
    for r in samples(out, "openwebtext2_reference"):
        assert r["n_input_tokens"] == len(tok(records[r["doc_id"]]["text"])["input_ids"])


def test_many_subsets_show_a_progress_bar_and_one_line_when_far_too_many(gpt2_path, tiny_corpus, tmp_path, capsys,
                                                                         caplog, monkeypatch):
    import math

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    argv = ["experiment", "sampling", "--model_args", f"pretrained={gpt2_path}", "--tasks", str(tiny_corpus),
            "--sizes", "19:40", "--metrics", "effective_rank", "--output_path", str(tmp_path)]
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "tiny: subsets:   0%|          | 0/40" in err  # the bar counts the subsets
    assert math.comb(20, 19) == 20 < 40
    lines = [r.getMessage() for r in caplog.records if "far more than needed" in r.getMessage()]
    assert lines == ["task tiny: far more than needed: 40 subsets of 19 from 20 records, but only 20 distinct ones "
                     "exist (draws repeat); each subset is aggregated (a progress bar shows them)"]
    caplog.clear()
    with caplog.at_level("WARNING"):  # 5 subsets of 19: nothing to say
        assert main(argv[:-5] + ["19:5", "--metrics", "effective_rank", "--output_path", str(tmp_path)]) == 0
    assert not [r for r in caplog.records if "far more than needed" in r.getMessage()]
