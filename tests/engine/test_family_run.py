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
