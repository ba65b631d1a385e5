"""`run --metrics lidar,dime,infonce,...`: the augmentation metrics in the engine, so they resume after a SIGKILL,
give the same values on two ranks, and reach compare --by_layer and experiment checkpoints.

Values are checked against the metric functions of tests/metrics/test_augment.py (frozen transcriptions of
information_flow's code) applied to pooled views computed here from Hugging Face forwards.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.data.augment import augment_text, view_seed
from tests import faults
from tests.metrics.test_augment import _ref_dime, _ref_infonce, _ref_lidar
from tests.tiny_models import make_tiny_causal_lm

pytest.importorskip("nlpaug")

AUG = "lidar,dime,infonce,infonce_mi_lower_bound"
N_DOCS, N_VIEWS = 6, 3


@pytest.fixture(scope="module")
def aug_run(tiny_root, tiny_corpus, tmp_path_factory):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    out = tmp_path_factory.mktemp("aug_run")
    args = ["--model_args", f"pretrained={path}", "--tasks", str(tiny_corpus), "--metrics", f"matrix_entropy,{AUG}",
            "--n_views", str(N_VIEWS), "--layers", "0,-1", "--device", "cpu", "--limit", str(N_DOCS),
            "--batch_size", "2", "--seed", "7", "--log_samples"]
    return {"path": path, "args": args, "out": out, "first": faults.run(args, out)}


def _pooled_views(path, corpus, layers, seed):
    """(layers, docs, views, d) pooled views from batch-size-1 HF forwards of views made here."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    texts = [json.loads(line)["text"] for line in open(corpus).readlines()[:N_DOCS]]
    pooled = torch.zeros(len(layers), N_DOCS, N_VIEWS, model.config.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        for i, text in enumerate(texts):
            for j in range(N_VIEWS):
                enc = tok(augment_text(text, view_seed(seed, i, j)), return_tensors="pt", truncation=True, max_length=64)
                states = model(**enc, output_hidden_states=True).hidden_states
                for li, layer in enumerate(layers):
                    h = states[layer][0].double()
                    h = h - h.mean(dim=0)
                    pooled[li, i, j] = (h / h.norm(dim=1, keepdim=True)).mean(dim=0)
    return pooled


def test_run_writes_the_augmentation_metrics_per_layer_as_the_reference_computes_them(aug_run, tiny_corpus):
    first = aug_run["first"]
    layers = first["config"]["layers"]
    pooled = _pooled_views(aug_run["path"], tiny_corpus, layers, seed=7)
    lidar = _ref_lidar(pooled, 1.0, "maxEntropy")
    infonce, bound = _ref_infonce(pooled[:, :, :2])
    r = first["results"]["tiny"]
    for li, layer in enumerate(layers):
        torch.manual_seed(7)
        dime = _ref_dime(pooled[li:li + 1, :, :2], 1.0, "maxEntropy")[0]
        entry = r["by_layer"][str(layer)]
        assert entry["lidar"] == pytest.approx(lidar[li], rel=1e-4)
        assert entry["dime"] == pytest.approx(dime, rel=1e-4, abs=1e-6)
        assert entry["infonce"] == pytest.approx(infonce[li], rel=1e-5)
        assert entry["infonce_mi_lower_bound"] == pytest.approx(bound[li], rel=1e-4, abs=1e-6)
        assert entry["lidar_n_documents"] == N_DOCS and entry["lidar_stderr"] is None
    assert r["n_views_measured"] == N_DOCS * N_VIEWS
    conv = first["config"]["conventions"]
    assert conv["lidar"]["n_views"] == N_VIEWS and conv["lidar"]["extra_forwards_per_document"] == N_VIEWS
    assert conv["lidar"]["normalization"] == "maxEntropy" and conv["infonce"]["temperature"] == 0.1
    assert first["higher_is_better"]["lidar"] is True and first["higher_is_better"]["infonce"] is False


@pytest.mark.slow
def test_a_killed_run_resumes_and_two_ranks_give_the_same_values(aug_run):
    out = aug_run["out"].parent / "aug_killed"
    faults.crash(aug_run["args"], out, after_lines=2)
    resumed = faults.run(aug_run["args"], out)
    assert 0 < resumed["results"]["tiny"]["n_resumed"] < N_DOCS
    assert faults.numbers(resumed) == faults.numbers(aug_run["first"])
    # the samples file, partly rebuilt from the store, is byte-identical to the uninterrupted run's
    first_samples, = aug_run["out"].rglob("samples_*.jsonl")
    resumed_samples, = out.rglob("samples_*.jsonl")
    assert resumed_samples.read_bytes() == first_samples.read_bytes()
    two = faults.run(aug_run["args"], aug_run["out"].parent / "aug_two", ranks=2)
    assert two["config"]["world_size"] == 2
    assert faults.numbers(two) == faults.numbers(aug_run["first"])


def test_other_views_are_not_reused_and_metric_settings_reuse_the_stored_views(aug_run):
    args, out = aug_run["args"], aug_run["out"]
    other_seed = faults.run([a if a != "7" else "8" for a in args], out)
    assert other_seed["results"]["tiny"]["n_resumed"] == 0  # other seeds, other view texts
    warmer = faults.run([*args, "--infonce_temperature", "0.5", "--lbl_normalization", "logD"], out)
    r, first = warmer["results"]["tiny"], aug_run["first"]["results"]["tiny"]
    assert r["n_resumed"] == N_DOCS  # the same views: only the data-set values change
    assert r["infonce"] != pytest.approx(first["infonce"], rel=1e-3)
    assert r["lidar"] != pytest.approx(first["lidar"], rel=1e-3)
    assert warmer["config"]["conventions"]["lidar"]["normalization"] == "logD"


def test_the_on_screen_table_shows_every_augmentation_metric_at_every_layer(aug_run):
    from matrixeval.report.tables import results_markdown, results_rows

    first = aug_run["first"]
    rows = {(r["layer"], r["metric"].split()[0]): r["value"] for r in results_rows(first)}
    for layer, values in first["results"]["tiny"]["by_layer"].items():
        for metric in AUG.split(","):
            assert rows[(int(layer), metric)] == values[metric]
    assert "| lidar ↑" in results_markdown(first) and "| infonce ↓" in results_markdown(first)


def test_compare_draws_their_layer_profiles_and_ranks_them_without_intervals(aug_run, tmp_path):
    files = []
    for i, shift in enumerate((0.0, 0.1)):
        out = json.loads(sorted(aug_run["out"].rglob("results_*.json"))[0].read_text())
        out["config"]["model_name"] += f"-{i}"
        out["config"]["model_args"] += f"-{i}"  # another identity, so compare keeps both
        out["results"]["tiny"]["lidar"] += shift
        files.append(tmp_path / f"results_{i}.json")
        files[-1].write_text(json.dumps(out))
    base = [sys.executable, "-m", "matrixeval", "compare", *map(str, files), "--output", str(tmp_path / "c")]
    proc = subprocess.run([*base, "--by_layer", "--metrics", "lidar,infonce", "--rank", "lidar"], env=faults.env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = next(tmp_path.glob("c*by_layer.csv")).read_text().splitlines()[0]
    assert "lidar" in header and "infonce" in header
    summary = json.loads((tmp_path / "c.json").read_text())
    assert [row["model"] for row in summary["ranking"]][0].endswith("-1")  # higher LiDAR is better
    assert len(summary["ranking"]) == 2
    assert "one value of the whole data set" in summary["bootstrap"]["unavailable"]


def test_a_document_with_a_context_is_refused_in_one_line():
    from matrixeval.session import Session
    from matrixeval.data import Document
    from matrixeval.errors import MatrixEvalError

    session = Session(None, metrics="lidar", n_views=2, output_path=None, device="cpu")
    with pytest.raises(MatrixEvalError, match="augment whole documents"):
        session.run("qa", [Document(0, "an answer here", {}, context="a question?")])


def test_experiment_checkpoints_reports_the_augmentation_metrics(tiny_root, tiny_corpus, tmp_path):
    from matrixeval import evaluate
    from matrixeval.experiments.checkpoints import checkpoints_experiment

    for step, seed in ((10, 1), (20, 2)):
        shutil.copytree(make_tiny_causal_lm(tiny_root, "gpt2", seed=seed), tmp_path / "m" / f"checkpoint-{step}")
    out = checkpoints_experiment(tasks=str(tiny_corpus), checkpoints=str(tmp_path / "m" / "checkpoint-*"),
                                 metrics="lidar,infonce", layers="-1", limit=4, n_views=2, output_path=tmp_path / "o")
    rows = {r["step"]: r for r in out["table"]}
    assert sorted(rows) == [10, 20]
    for step in (10, 20):
        plain = evaluate(f"pretrained={tmp_path / 'm' / f'checkpoint-{step}'}", str(tiny_corpus), metrics="lidar,infonce",
                         layers="-1", limit=4, n_views=2, output_path=None)["results"]["tiny"]
        assert rows[step]["lidar"] == pytest.approx(plain["lidar"], rel=1e-12)
        assert rows[step]["infonce"] == pytest.approx(plain["infonce"], rel=1e-12)
    assert out["config"]["conventions"]["lidar"]["n_views"] == 2


def test_views_cut_at_max_length_are_a_caveat_on_screen_and_in_the_json(tiny_root, tiny_corpus, tmp_path):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", f"pretrained={path}",
                           "--tasks", str(tiny_corpus), "--metrics", "lidar", "--n_views", "2", "--limit", "4",
                           "--max_length", "12", "--device", "cpu", "--output_path", str(tmp_path)],
                          env=faults.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["results"]["tiny"]
    # counted independently: a view is cut when its own tokenisation is longer than max_length
    tok = AutoTokenizer.from_pretrained(path)
    texts = [json.loads(line)["text"] for line in open(tiny_corpus).readlines()[:4]]
    cut = sum(len(tok(augment_text(t, view_seed(1234, i, j)))["input_ids"]) > 12 for i, t in enumerate(texts)
              for j in range(2))
    assert entry["n_views_truncated"] == cut > 0 and entry["n_views_measured"] == 8
    codes = {w["code"] for w in entry["warnings"]}
    assert "views_truncated" in codes and "[views_truncated]" in proc.stderr
