"""Fault injection for matrixeval runs: start `python -m matrixeval run` (or torchrun) in a subprocess,
SIGKILL it and all its processes once some samples are durable, tear a store line, and compare results.

Used by tests/engine/test_resume.py and scripts/fault_runs.py. Every run uses one thread per process so
that 1 and 2 ranks do the same arithmetic, and MATRIXEVAL_FAULT_BATCH_DELAY to make a kill land mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def env(delay: float = 0.0) -> dict[str, str]:
    out = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    out["MATRIXEVAL_FAULT_BATCH_DELAY"] = str(delay)
    return out


def command(run_args: list[str], out: Path, ranks: int) -> list[str]:
    args = ["-m", "matrixeval", "run", *run_args, "--output_path", str(out)]
    if ranks == 1:
        return [sys.executable, *args]
    return [str(VENV_BIN / "torchrun"), "--standalone", f"--nproc_per_node={ranks}", *args]


def stored_lines(out: Path) -> int:
    """Durable records in every store under `out` (any command's store folders), read while a run may still be
    appending (bytes, not text: a half-written character is no error)."""
    total = 0
    for p in out.rglob("store/*/*.jsonl"):
        try:
            total += p.read_bytes().count(b"\n")
        except OSError:
            pass
    return total


def run(run_args: list[str], out: Path, ranks: int = 1) -> dict:
    """A run to its end; the newest results JSON it wrote."""
    proc = subprocess.run(command(run_args, out, ranks), env=env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(sorted(out.rglob("results_*.json"))[-1].read_text())


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant at once, as a machine failure would: torchrun starts each
    worker in a session of its own, so killing the launcher's process group alone would leave them running."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def crash(run_args: list[str], out: Path, ranks: int = 1, after_lines: int = 4, delay: float = 0.4) -> int:
    """Start a run and SIGKILL it with all its processes once `after_lines` samples are durable; lines stored."""
    proc = subprocess.Popen(command(run_args, out, ranks), env=env(delay), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while stored_lines(out) < after_lines:
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended before the kill: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            kill_tree(proc.pid)
            raise TimeoutError("no samples were stored in time")
        time.sleep(0.05)
    kill_tree(proc.pid)
    proc.wait()
    return stored_lines(out)


def tear_last_line(out: Path) -> Path:
    """Cut the last line of the largest store shard in half, as a crash during a write would."""
    shard = max(out.rglob("store/*/*.jsonl"), key=lambda p: p.stat().st_size)
    text = shard.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    shard.write_text(text[: len(text) - len(last) // 2 - 1])
    return shard


def numbers(result: dict) -> dict:
    """Every metric value of the results section, without the bookkeeping that differs by design."""
    r = json.loads(json.dumps(result["results"]))
    for entry in r.values():
        for key in ("n_resumed", "n_torn_store_lines"):
            entry.pop(key, None)
    return r
