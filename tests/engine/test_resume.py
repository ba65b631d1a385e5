"""Crash and resume for real: runs in subprocesses, SIGKILLed mid-way, resumed on 1 or 2 ranks.

The final JSON of every resumed run must carry bit-identical metric values to an uninterrupted run.
All runs use one thread per process so that 1 and 2 ranks do the same arithmetic.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_models import make_tiny_causal_lm

VENV_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(delay: float = 0.0) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["MATRIXEVAL_FAULT_BATCH_DELAY"] = str(delay)
    return env


def _cmd(model: Path, data: Path, out: Path, ranks: int) -> list[str]:
    args = ["-m", "matrixeval", "run", "--model_args", f"pretrained={model}", "--tasks", str(data),
            "--metrics", "matrix_entropy,nuclear_norm,loss,perplexity", "--layers", "0,-1",
            "--batch_size", "2", "--output_path", str(out)]
    if ranks == 1:
        return [sys.executable, *args]
    return [str(VENV_BIN / "torchrun"), "--standalone", f"--nproc_per_node={ranks}", *args]


def _stored_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.rglob("store/*/*.jsonl"))


def _run(model, data, out, ranks) -> dict:
    proc = subprocess.run(_cmd(model, data, out, ranks), env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(out.rglob("results_*.json"))
    return json.loads(files[-1].read_text())


def _crash(model, data, out, ranks, after_lines: int = 4) -> int:
    """Start a run, SIGKILL its whole process group once `after_lines` samples are durable."""
    proc = subprocess.Popen(_cmd(model, data, out, ranks), env=_env(delay=0.4), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while _stored_lines(out) < after_lines:
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _stored_lines(out)


def _numbers(result: dict) -> dict:
    """Every metric value of the results section, without the bookkeeping that differs by design."""
    r = json.loads(json.dumps(result["results"]))
    for entry in r.values():
        for key in ("n_resumed", "n_torn_store_lines"):
            entry.pop(key)
    return r


@pytest.fixture(scope="module")
def setup(tiny_root, tiny_corpus, tmp_path_factory):
    model = make_tiny_causal_lm(tiny_root, "gpt2")
    baseline = _run(model, tiny_corpus, tmp_path_factory.mktemp("baseline"), 1)
    assert baseline["results"]["tiny"]["n_resumed"] == 0
    return model, tiny_corpus, baseline


@pytest.mark.parametrize("before,after", [(1, 1), (2, 1), (1, 2)])
def test_sigkill_then_resume_gives_identical_numbers(setup, tmp_path, before, after):
    model, data, baseline = setup
    done = _crash(model, data, tmp_path, before)
    assert 0 < done < 20, "the kill must land mid-way"
    assert not list(tmp_path.rglob("results_*.json")), "a killed run must not leave a results file"
    resumed = _run(model, data, tmp_path, after)
    assert resumed["results"]["tiny"]["n_resumed"] >= done - before  # a torn last line per writer is recomputed
    assert resumed["results"]["tiny"]["n_resumed"] > 0
    assert _numbers(resumed) == _numbers(baseline)
    assert resumed["config"]["world_size"] == after


def test_two_gloo_ranks_equal_one_process(setup, tmp_path):
    model, data, baseline = setup
    two = _run(model, data, tmp_path, 2)
    assert two["config"]["world_size"] == 2
    assert _numbers(two) == _numbers(baseline)
