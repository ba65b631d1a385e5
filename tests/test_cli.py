"""The command line as users type it: `python -m matrixeval ...` in a subprocess."""

import json
import os
import subprocess
import sys


def _run(*argv, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "matrixeval", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_embedded_default_runs_offline(tmp_path):
    # `matrixeval run` with no model and no task: packaged MiniLM, built-in task, Diff-eRank vs a random init.
    proc = _run("run", "--limit", "12", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| pydoc_topics |" in proc.stdout and "diff_erank" in proc.stdout
    files = list((tmp_path / "results").rglob("results_*.json"))
    assert len(files) == 1
    out = json.loads(files[0].read_text())
    r = out["results"]["pydoc_topics"]
    assert r["n_samples"] == 12 and r["diff_erank"] > 0  # training compresses: erank(random) > erank(trained)
    assert out["config"]["model_name"].endswith("all-MiniLM-L6-v2")


def test_ls_lists_tasks_and_metrics(tmp_path):
    proc = _run("ls", cwd=tmp_path)
    assert proc.returncode == 0
    for name in ("pydoc_topics", "hh_rlhf", "openbookqa", "matrix_entropy", "nuclear_norm", "diff_erank"):
        assert name in proc.stdout


def test_user_error_is_one_line_and_non_zero(tmp_path):
    proc = _run("run", "--tasks", "no_such_task", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "Traceback" not in proc.stderr and "no_such_task" in proc.stderr
