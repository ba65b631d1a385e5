"""`matrixeval run --metrics rankme,rankme_reptrix,effective_rank_sigma` end to end on a tiny model.

Expected values come from HF's own `output_hidden_states` on batch-size-1 forwards and numpy SVDs of the
centred, L2-normalised tokens (Garrido et al.'s RankMe definition, reptrix's `get_rank` on σ²).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.metrics import reference as ref
from tests.tiny_models import make_tiny_causal_lm


def _ranks(hidden: torch.Tensor) -> dict[str, float]:
    s = np.linalg.svd(ref.normalized(hidden).numpy(), compute_uv=False)
    out = {}
    for name, v, eps in (("rankme", s, 1e-7), ("rankme_reptrix", s**2, 1e-7), ("effective_rank_sigma", s, 0.0)):
        p = v / v.sum() + eps
        p = p[p > 0]
        out[name] = float(np.exp(-np.sum(p * np.log(p))))
    return out


def test_run_writes_the_spectral_family_per_sample_and_per_task(tiny_root, tiny_corpus, tmp_path):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    metrics = "matrix_entropy,rankme,rankme_reptrix,effective_rank_sigma"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", f"pretrained={path}",
                           "--tasks", str(tiny_corpus), "--metrics", metrics, "--device", "cpu", "--limit", "8",
                           "--output_path", str(tmp_path), "--log_samples"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in open(next(tmp_path.rglob("samples_tiny_*.jsonl")))]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    expected = []
    with torch.no_grad():
        for line in open(tiny_corpus).readlines()[:8]:
            enc = tok(json.loads(line)["text"], return_tensors="pt")
            expected.append(_ranks(model(**enc, output_hidden_states=True).hidden_states[-1][0]))
    layer = str(out["config"]["layers"][-1])
    assert len(samples) == 8
    r = out["results"]["tiny"]
    for name in ("rankme", "rankme_reptrix", "effective_rank_sigma"):
        got = [s["layers"][layer][name] for s in samples]
        assert got == pytest.approx([e[name] for e in expected], rel=1e-5), name
        assert r[name] == pytest.approx(np.mean([e[name] for e in expected]), rel=1e-5), name
    assert out["higher_is_better"]["rankme"] is True
    assert r["rankme"] != pytest.approx(r["rankme_reptrix"], rel=1e-2)  # two conventions, two numbers


# --- the Layer-by-Layer family: conventions, per-data-set metrics, resume and world size -------------------

LBL_METRICS = "matrix_entropy,prompt_entropy,alpha_req,curvature,dataset_entropy,dataset_entropy_last"


def _hf_hidden(path, corpus, n):
    """Every layer's hidden states of the first n texts, one batch-size-1 HF forward each."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        return [model(**tok(json.loads(line)["text"], return_tensors="pt"), output_hidden_states=True).hidden_states
                for line in open(corpus).readlines()[:n]]


@pytest.fixture(scope="module")
def lbl_run(tiny_root, tiny_corpus, tmp_path_factory):
    from tests import faults

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    out = tmp_path_factory.mktemp("lbl")
    args = ["--model_args", f"pretrained={path}", "--tasks", str(tiny_corpus), "--metrics", LBL_METRICS,
            "--convention", "layer_by_layer", "--lbl_normalization", "logD", "--alpha_req_window", "0:3",
            "--layers", "0,-1", "--device", "cpu", "--limit", "8", "--batch_size", "3", "--log_samples"]
    first = faults.run(args, out)
    samples = [json.loads(line) for line in open(sorted(out.rglob("samples_tiny_*.jsonl"))[-1])]
    return {"path": path, "args": args, "out": out, "first": first, "samples": samples}


def test_layer_by_layer_values_equal_the_pure_functions_on_hf_hidden_states(lbl_run, tiny_corpus):
    from matrixeval.metrics import alpha_req, curvature, dataset_entropy, prompt_entropy, spectral_metrics

    first, samples = lbl_run["first"], lbl_run["samples"]
    hidden = _hf_hidden(lbl_run["path"], tiny_corpus, 8)
    layers = first["config"]["layers"]
    assert len(layers) == 2
    for layer in layers:
        hs = [h[layer][0].double() for h in hidden]
        got = {name: [s["layers"][str(layer)][name] for s in samples] for name in ("prompt_entropy", "alpha_req", "curvature")}
        want = {
            "prompt_entropy": [prompt_entropy(h, normalization="logD").item() for h in hs],
            "alpha_req": [alpha_req(spectral_metrics(h).spectrum, (0, 3)).item() for h in hs],
            "curvature": [curvature(h).item() for h in hs],
        }
        for name in got:
            np.testing.assert_allclose(np.array(got[name], dtype=float), want[name], rtol=1e-5, equal_nan=True,
                                       err_msg=name)
        entry = first["results"]["tiny"]["by_layer"][str(layer)]
        mean = torch.stack([ref.normalized(h).mean(dim=0) for h in hs])
        last = torch.stack([ref.normalized(h)[-1] for h in hs])
        assert entry["dataset_entropy"] == pytest.approx(dataset_entropy(mean, normalization="logD"), rel=1e-5)
        assert entry["dataset_entropy_last"] == pytest.approx(dataset_entropy(last, normalization="logD"), rel=1e-5)
        assert entry["dataset_entropy_n_documents"] == 8
        # the clamp is the whole difference from Wei et al.'s matrix entropy
        assert entry["prompt_entropy"] > entry["matrix_entropy"]
    conv = first["config"]["conventions"]
    assert conv["prompt_entropy"] == {"convention": "layer_by_layer", "alpha": 1.0, "normalization": "logD", "clamp": True}
    assert conv["dataset_entropy_last"]["pooling"] == "last" and conv["alpha_req"]["window"] == [0, 3]
    assert conv["matrix_entropy"]["convention"] == "wei2024"
    assert first["higher_is_better"]["curvature"] is None


@pytest.mark.slow
def test_a_resumed_run_and_two_ranks_give_the_same_family_values(lbl_run):
    from tests import faults

    again = faults.run(lbl_run["args"], lbl_run["out"])
    assert again["results"]["tiny"]["n_resumed"] == 8
    assert again["results"]["tiny"]["by_layer"] == lbl_run["first"]["results"]["tiny"]["by_layer"]
    two = faults.run(lbl_run["args"], lbl_run["out"].parent / "two_ranks", ranks=2)
    assert two["config"]["world_size"] == 2
    for layer, entry in lbl_run["first"]["results"]["tiny"]["by_layer"].items():
        for name in ("dataset_entropy", "dataset_entropy_last", "prompt_entropy", "curvature", "alpha_req"):
            assert two["results"]["tiny"]["by_layer"][layer][name] == pytest.approx(entry[name], rel=1e-12), name


def test_compare_will_not_rank_by_a_metric_with_no_direction(lbl_run, tmp_path):
    from tests import faults

    files = []
    for i, scale in enumerate((1.0, 1.1)):  # a second "model": the same file, renamed, another curvature
        out = json.loads(sorted(lbl_run["out"].rglob("results_*.json"))[0].read_text())
        out["config"]["model_name"] += f"-{i}"
        out["results"]["tiny"]["curvature"] *= scale
        files.append(tmp_path / f"results_{i}.json")
        files[-1].write_text(json.dumps(out))
    base = [sys.executable, "-m", "matrixeval", "compare", *map(str, files), "--output", str(tmp_path / "c")]
    proc = subprocess.run([*base, "--rank", "curvature"], env=faults.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "matrixeval: error: 'curvature' is neither better high nor low; to rank by it anyway pass "
        "--higher_is_better curvature=true|false (higher_is_better= in Python)"]
    ok = subprocess.run([*base, "--rank", "curvature", "--higher_is_better", "curvature=false"], env=faults.env(),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    profiles = subprocess.run([*base, "--by_layer", "--metrics", "dataset_entropy,prompt_entropy"], env=faults.env(),
                              capture_output=True, text=True, timeout=120)
    assert profiles.returncode == 0, profiles.stderr[-2000:]
    csv = next(tmp_path.glob("c*by_layer.csv")).read_text()
    assert "dataset_entropy" in csv.splitlines()[0] and "prompt_entropy" in csv.splitlines()[0]


def test_wei2024_prompt_entropy_is_matrix_entropy_and_options_key_the_store(tiny_root, tiny_corpus, tmp_path):
    from tests import faults

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    args = ["--model_args", f"pretrained={path}", "--tasks", str(tiny_corpus), "--metrics",
            "matrix_entropy,prompt_entropy", "--device", "cpu", "--limit", "6"]
    wei = faults.run(args, tmp_path)
    r = wei["results"]["tiny"]
    assert r["prompt_entropy"] == pytest.approx(r["matrix_entropy"], rel=1e-12)
    assert wei["config"]["conventions"]["prompt_entropy"]["clamp"] is False
    lbl = faults.run([*args, "--convention", "layer_by_layer"], tmp_path)
    assert lbl["results"]["tiny"]["n_resumed"] == 0  # another definition: the stored values are not reused
    assert lbl["results"]["tiny"]["prompt_entropy"] > r["prompt_entropy"]
    assert lbl["results"]["tiny"]["matrix_entropy"] == pytest.approx(r["matrix_entropy"], rel=1e-12)


@pytest.mark.parametrize("flags,message", [
    (["--convention", "reptrix"], "RankMe's conventions are two metrics"),
    (["--alpha_req_window", "10"], "alpha_req window must be START:STOP"),
    (["--renyi_alpha", "0"], "alpha must be a positive"),
])
def test_bad_family_options_are_one_line_errors_before_any_model_loads(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", "pretrained=/nonexistent",
                           "--output_path", str(tmp_path), *flags], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("matrixeval: error: ") and message in lines[0], proc.stderr


def test_experiment_checkpoints_reports_the_family_at_every_requested_layer(tiny_root, tiny_corpus, tmp_path):
    import shutil

    from matrixeval import evaluate
    from matrixeval.experiments.checkpoints import checkpoints_experiment

    for step, seed in ((10, 1), (20, 2)):
        shutil.copytree(make_tiny_causal_lm(tiny_root, "gpt2", seed=seed), tmp_path / "member" / f"checkpoint-{step}")
    metrics = "prompt_entropy,curvature,dataset_entropy,alpha_req"
    out = checkpoints_experiment(tasks=str(tiny_corpus), checkpoints=str(tmp_path / "member" / "checkpoint-*"),
                                 metrics=metrics, layers="0,-1", limit=6, output_path=tmp_path / "out")
    rows = {(r["step"], r["layer"]): r for r in out["table"]}
    last = max(r["layer"] for r in out["table"])
    assert sorted(rows) == [(10, 0), (10, last), (20, 0), (20, last)] and last > 0
    for step in (10, 20):
        plain = evaluate(f"pretrained={tmp_path / 'member' / f'checkpoint-{step}'}", str(tiny_corpus),
                         metrics=metrics, layers="0,-1", limit=6, output_path=None)["results"]["tiny"]["by_layer"]
        for layer in (0, last):
            for m in ("prompt_entropy", "curvature", "dataset_entropy"):
                assert rows[(step, layer)][m] == pytest.approx(plain[str(layer)][m], rel=1e-12), (step, layer, m)
    assert rows[(10, last)]["dataset_entropy"] != pytest.approx(rows[(20, last)]["dataset_entropy"], rel=1e-6)


def test_experiment_checkpoints_takes_the_convention_flags(tiny_root, tiny_corpus, tmp_path):
    import shutil

    from matrixeval import evaluate
    from matrixeval.cli import build_parser
    from matrixeval.experiments.checkpoints import checkpoints_experiment

    args = build_parser().parse_args(["experiment", "checkpoints", "--checkpoints", "x", "--convention",
                                      "layer_by_layer", "--lbl_normalization", "logN", "--renyi_alpha", "2"])
    assert (args.convention, args.lbl_normalization, args.renyi_alpha) == ("layer_by_layer", "logN", 2.0)
    shutil.copytree(make_tiny_causal_lm(tiny_root, "gpt2", seed=3), tmp_path / "m" / "checkpoint-5")
    settings = dict(metrics="matrix_entropy,prompt_entropy", layers="-1", limit=4, convention="layer_by_layer",
                    renyi_alpha=2.0)
    out = checkpoints_experiment(tasks=str(tiny_corpus), checkpoints=str(tmp_path / "m" / "checkpoint-*"),
                                 output_path=tmp_path / "o", **settings)
    plain = evaluate(f"pretrained={tmp_path / 'm' / 'checkpoint-5'}", str(tiny_corpus), output_path=None,
                     **settings)
    (row,) = out["table"]
    assert row["prompt_entropy"] == pytest.approx(plain["results"]["tiny"]["prompt_entropy"], rel=1e-12)
    assert row["prompt_entropy"] != pytest.approx(row["matrix_entropy"], rel=1e-3)  # clamp and α = 2
    assert out["config"]["conventions"]["prompt_entropy"] == {"convention": "layer_by_layer", "alpha": 2.0,
                                                              "normalization": "maxEntropy", "clamp": True}
