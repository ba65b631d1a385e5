"""compare's rankings carry a paired bootstrap over the shared documents (checked against an independent numpy
bootstrap), and notes for the caveats that concern the ranked metric (issue 18)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import rankdata

from matrixeval.experiments.compare import compare

STAMP = "2026-11-23T21-00-00.000000"


def _model(folder, name, means, rng, n_docs=40, skip=(), warnings=None, extra=None):
    """A results file plus samples files: per task, per-sample entropies around ``means[task]``; doc ids in
    ``skip`` are missing (so only the shared documents may be used)."""
    folder.mkdir(parents=True)
    tasks, values = {}, {}
    for task, mean in means.items():
        vals = {d: float(mean + rng.normal(0, 0.05)) for d in range(n_docs) if d not in skip}
        values[task] = vals
        records = [{"doc_id": d, "n_input_tokens": 20, "truncated": False,
                    "layers": {"2": {"entropy": v, "status": "ok", **(extra or {})}}} for d, v in vals.items()]
        (folder / f"samples_{task}_{STAMP}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        tasks[task] = {"matrix_entropy": float(np.mean(list(vals.values()))), "n_samples": len(vals),
                       "primary_layer": 2, "warnings": warnings or []}
    result = {"results": tasks, "date": "2026-11-23T21:00:00",
              "config": {"model_args": f"pretrained=org/{name}", "model_name": name, "dtype": "float32",
                         "n_params": 1e8},
              "higher_is_better": {"matrix_entropy": False}}
    path = folder / f"results_{STAMP}.json"
    path.write_text(json.dumps(result))
    return str(path), values


def _independent(values, names, tasks, by, n_resamples, seed):
    """Same seed semantics: one default_rng(seed); per resample, per task in name order, n draws of shared docs."""
    shared = {t: sorted(set.intersection(*(set(values[n][t]) for n in names))) for t in tasks}
    rng = np.random.default_rng(seed)
    ranks = []
    for _ in range(n_resamples):
        scores = {}
        for t in tasks:
            pick = rng.integers(0, len(shared[t]), len(shared[t]))
            docs = [shared[t][i] for i in pick]
            scores[t] = np.array([sum(values[n][t][d] for d in docs) / len(docs) for n in names])
        if by == "mean_rank":
            ranks.append(rankdata(np.mean([rankdata(scores[t]) for t in tasks], axis=0)))
        else:
            ranks.append(rankdata(np.mean([scores[t] for t in tasks], axis=0)))
    return np.array(ranks), shared


@pytest.mark.parametrize("by", ["mean", "mean_rank"])
def test_rank_intervals_and_flip_rates_match_an_independent_bootstrap(tmp_path, by):
    rng = np.random.default_rng(7)
    names = ["a", "b", "c"]
    means = {"a": {"t1": 0.50, "t2": 0.60}, "b": {"t1": 0.501, "t2": 0.601}, "c": {"t1": 0.70, "t2": 0.80}}
    files, values = [], {}
    for i, n in enumerate(names):
        path, vals = _model(tmp_path / n, n, means[n], rng, skip={i})  # each model misses one document
        files.append(path)
        values[n] = vals
    out = compare(files, rank="matrix_entropy", rank_by=by, n_resamples=300, seed=3, output=tmp_path / "c")
    ranks, shared = _independent(values, names, ["t1", "t2"], by, 300, 3)
    assert out["bootstrap"]["n_docs"] == {"t1": 37, "t2": 37} == {t: len(d) for t, d in shared.items()}
    for row in out["ranking"]:
        i = names.index(row["model"])
        assert [row["rank_lo"], row["rank_hi"]] == pytest.approx(
            [np.percentile(ranks[:, i], 2.5), np.percentile(ranks[:, i], 97.5)])
    order = [row["model"] for row in out["ranking"]]
    assert order[2] == "c"
    for row, nxt in zip(out["ranking"], order[1:]):
        expected = np.mean(ranks[:, names.index(nxt)] < ranks[:, names.index(row["model"])])
        assert row["flip_next"] == pytest.approx(expected)
    # a and b are close (0.001 apart, noise 0.05): their order flips often; c never overtakes.
    assert 0.0 < out["ranking"][0]["flip_next"] < 1.0
    assert out["ranking"][1]["flip_next"] == 0.0
    body = json.loads((tmp_path / "c.json").read_text())
    assert body["bootstrap"]["n_resamples"] == 300 and body["ranking"][0]["rank_lo"] == out["ranking"][0]["rank_lo"]
    assert "paired bootstrap" in out["markdown"] and "300 resamples, seed 3" in out["markdown"]


def test_without_samples_for_every_file_one_note_and_no_intervals(tmp_path):
    rng = np.random.default_rng(0)
    a, _ = _model(tmp_path / "a", "a", {"t": 0.5}, rng)
    b, _ = _model(tmp_path / "b", "b", {"t": 0.6}, rng)
    next((tmp_path / "b").glob("samples_*.jsonl")).unlink()
    out = compare([a, b], rank="matrix_entropy", output=None)
    assert [n for n in out["notes"] if "without intervals" in n] == [
        "ranking by matrix_entropy: no per-sample matrix_entropy for t from b (run with --log_samples); "
        "ranked without intervals"]
    assert all("rank_lo" not in row for row in out["ranking"])


def test_a_caveat_on_the_ranked_metric_is_noted_and_another_metrics_is_not(tmp_path):
    rng = np.random.default_rng(0)
    caveat = [{"code": "perplexity_dominated", "message": "top 1% of samples carry 88% of the mean perplexity",
               "advice": "rank by loss"}]
    a, _ = _model(tmp_path / "a", "a", {"t": 0.5}, rng, warnings=caveat)
    b, _ = _model(tmp_path / "b", "b", {"t": 0.6}, rng)
    out = compare([a, b], rank="matrix_entropy", n_resamples=0, output=None)
    assert not any("perplexity_dominated" in n for n in out["notes"])
    for path in (a, b):  # the same files, ranked by perplexity
        data = json.load(open(path))
        data["results"]["t"]["perplexity"] = 10.0 if path == a else 20.0
        data["higher_is_better"]["perplexity"] = False
        open(path, "w").write(json.dumps(data))
    out = compare([a, b], rank="perplexity", n_resamples=0, output=None)
    assert [n for n in out["notes"] if "perplexity_dominated" in n] == [
        "ranking by perplexity: a / t has caveat [perplexity_dominated] top 1% of samples carry 88% of the mean "
        "perplexity"]


def test_nuclear_norms_disagreeing_in_order_is_noted(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for name, approx, exact in (("a", 0.3, 0.5), ("b", 0.4, 0.45)):
        path, _ = _model(tmp_path / name, name, {"t": 0.5}, rng)
        data = json.load(open(path))
        data["results"]["t"].update(nuclear_norm=approx, nuclear_norm_exact=exact)
        open(path, "w").write(json.dumps(data))
        files.append(path)
    out = compare(files, rank="nuclear_norm", n_resamples=0, output=tmp_path / "c")
    line = [n for n in out["notes"] if "nuclear_norm_order_disagrees" in n]
    assert line and "orders the models a > b but nuclear_norm_exact b > a" in line[0]
    assert line[0] in json.loads((tmp_path / "c.json").read_text())["notes"]
    agree = compare(files, rank="matrix_entropy", n_resamples=0, output=None)
    assert not any("nuclear_norm_order_disagrees" in n for n in agree["notes"])
    assert [r["model"] for r in out["ranking"]] == ["a", "b"] and math.isfinite(out["ranking"][0]["average"])
