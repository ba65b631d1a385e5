"""experiment augment: LiDAR, DiME and InfoNCE from views made and measured here, independently of the pipeline."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from matrixeval.data.augment import augment_text, view_seed
from matrixeval.experiments.augment import augment_experiment
from tests.metrics.test_augment import _ref_dime, _ref_infonce, _ref_lidar

from .conftest import check_outputs, read_jsonl

pytest.importorskip("nlpaug")


def _nlpaug_view(text, seed):
    import nlpaug.augmenter.char as nac
    import nlpaug.augmenter.word as naw
    import nlpaug.flow as naf

    random.seed(seed)
    np.random.seed(seed)
    return naf.Sequential([naw.SplitAug(), nac.RandomCharAug(), nac.KeyboardAug()]).augment(text, n=1)[0]


def test_views_are_seeded_per_document_and_view_and_leave_global_generators_alone():
    text = "the quick brown fox jumps over the lazy dog and runs far away"
    random.seed(5)
    before = random.random()
    random.seed(5)
    a = augment_text(text, view_seed(0, 3, 1))
    assert random.random() == before  # the global generator is where it was
    assert a == augment_text(text, view_seed(0, 3, 1)) == _nlpaug_view(text, view_seed(0, 3, 1))
    assert a != text and a != augment_text(text, view_seed(0, 3, 2))


def test_metrics_equal_a_direct_computation(gpt2_path, tiny_corpus, tmp_path):
    from tests.tiny_models import NUM_LAYERS

    n_docs, n_views, layers = 6, 3, [0, NUM_LAYERS]
    out = augment_experiment(f"pretrained={gpt2_path}", f"tiny={tiny_corpus}", n_views=n_views, layers="0,-1",
                             limit=n_docs, output_path=tmp_path, device="cpu", seed=11, batch_size=4)
    check_outputs(out, ["task", "layer", "n_docs", "n_views", "lidar", "dime", "infonce"])
    texts = [json.loads(line)["text"] for line in tiny_corpus.read_text().splitlines()[:n_docs]]
    tok = AutoTokenizer.from_pretrained(gpt2_path)
    model = AutoModel.from_pretrained(gpt2_path).eval()
    pooled = torch.zeros(len(layers), n_docs, n_views, model.config.hidden_size, dtype=torch.float64)
    for i, text in enumerate(texts):
        for j in range(n_views):
            ids = tok(_nlpaug_view(text, view_seed(11, i, j)), return_tensors="pt", truncation=True, max_length=64)
            with torch.no_grad():
                states = model(**ids, output_hidden_states=True).hidden_states
            for li, layer in enumerate(layers):
                h = states[layer][0]
                h = h - h.mean(dim=0)
                pooled[li, i, j] = (h / h.norm(dim=1, keepdim=True)).mean(dim=0).double()
    lidar_ref = _ref_lidar(pooled, 1.0, "maxEntropy")
    torch.manual_seed(11)
    dime_ref = [_ref_dime(pooled[li:li + 1, :, :2], 1.0, "maxEntropy")[0] for li in range(len(layers))
                if torch.manual_seed(11) is not None]
    infonce_ref, bound_ref = _ref_infonce(pooled[:, :, :2])
    rows = {r["layer"]: r for r in out["table"]}
    for li, layer in enumerate(layers):
        r = rows[layer]
        assert r["n_docs"] == n_docs and r["n_views"] == n_views
        assert r["lidar"] == pytest.approx(lidar_ref[li], rel=1e-4)
        assert r["dime"] == pytest.approx(dime_ref[li], rel=1e-4, abs=1e-6)
        assert r["infonce"] == pytest.approx(infonce_ref[li], rel=1e-5)
        assert r["infonce_mi_lower_bound"] == pytest.approx(bound_ref[li], rel=1e-4, abs=1e-6)
    assert out["results"]["tiny"]["warnings"][0]["code"] == "few_samples"
    assert "`few_samples`" in open(out["outputs"]["markdown"]).read()


def test_a_rerun_reuses_the_stored_views_and_other_settings_do_not(gpt2_path, tiny_corpus, tmp_path):
    argv = [sys.executable, "-m", "matrixeval", "experiment", "augment", "--model_args", f"pretrained={gpt2_path}",
            "--tasks", f"tiny={tiny_corpus}", "--limit", "4", "--n_views", "2", "--layers", "-1", "--device", "cpu",
            "--output_path", str(tmp_path)]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert "task tiny: resumed 4 of 4 from the store" in again.stderr
    other = subprocess.run([*argv, "--seed", "2"], capture_output=True, text=True, timeout=300)
    assert other.returncode == 0 and "resumed" not in other.stderr
    tables = [json.loads(p.read_text())["table"] for p in sorted(tmp_path.glob("*/augment_*.json"))]
    assert tables[0] == tables[1] and tables[0] != tables[2]


def test_bad_settings_fail_before_loading(tmp_path, capsys):
    from matrixeval.cli import main

    for flags, text in ((["--n_views", "1"], "n_views must be at least 2"),
                        (["--temperature", "0"], "temperature must be a positive"),
                        (["--infonce_temperature", "-1"], "temperature must be a positive"),
                        (["--dime_iters", "0"], "dime_iters must be at least 1"),
                        (["--alpha", "nan"], "alpha must be a positive")):
        code = main(["experiment", "augment", "--model_args", f"pretrained={tmp_path / 'absent'}", *flags])
        err = capsys.readouterr().err
        assert code == 2 and text in err and err.count("\n") == 1, err


def test_samples_records_are_not_written_without_log_samples(gpt2_path, tiny_corpus, tmp_path):
    out = augment_experiment(f"pretrained={gpt2_path}", f"tiny={tiny_corpus}", n_views=2, layers="-1", limit=3,
                             output_path=tmp_path, device="cpu")
    assert not list(tmp_path.rglob("samples_*.jsonl")) and out["results"]["tiny"]["lidar_n_documents"] == 3
    assert [r["n_docs"] for r in out["table"]] == [3]
    assert read_jsonl  # the helper module is shared with the other experiment tests
