import pytest

from matrixeval.engine.dist import World, rank_gpus


@pytest.mark.parametrize("local_size,n_gpus,expected", [
    (2, 8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (4, 8, [[0, 1], [2, 3], [4, 5], [6, 7]]),
    (3, 8, [[0, 1], [2, 3], [4, 5]]),  # the last two GPUs stay idle rather than shared
    (2, 1, [[0], [0]]),  # fewer GPUs than ranks: ranks share, as plain data parallelism would
])
def test_each_rank_gets_its_own_share_of_the_node(monkeypatch, local_size, n_gpus, expected):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_size))
    got = [rank_gpus(World(rank=r, size=local_size, local_rank=r), n_gpus) for r in range(local_size)]
    assert got == expected


def test_device_map_is_limited_to_the_ranks_gpus(monkeypatch, tiny_root):
    from transformers import AutoModelForCausalLM

    from matrixeval.models import load_model, parse_model_args
    from tests.tiny_models import make_tiny_causal_lm

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    seen = {}
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        seen.update(kwargs)
        kwargs.pop("max_memory")
        return real(cls, name, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    monkeypatch.setattr("accelerate.utils.get_max_memory", lambda: {0: 10, 1: 10, 2: 10, 3: 10, "cpu": 99})
    load_model(parse_model_args(f"pretrained={path},device_map=cpu"), gpus=[2, 3])
    assert seen["max_memory"] == {2: 10, 3: 10, "cpu": 99} and seen["device_map"] == "cpu"


def _workers(launcher: int) -> dict:
    """torchrun's worker processes by their RANK."""
    import psutil

    out = {}
    for p in psutil.Process(launcher).children(recursive=True):
        try:
            rank = p.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None and "matrixeval" in " ".join(p.cmdline()):
            out[int(rank)] = p
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stopped", [1, 0])
def test_a_stopped_rank_ends_the_other_within_the_timeout_with_one_line(tiny_root, tiny_corpus, tmp_path, stopped):
    """issue 16: a torchrun rank stopped with SIGSTOP left the other waiting silently up to 30 minutes; now the
    other rank stops --dist_timeout seconds after its last heartbeat, with one line naming the stopped rank (rank 0
    included: the heartbeats live in the launcher's store, not in rank 0)."""
    import signal
    import subprocess
    import time

    from tests import faults
    from tests.tiny_models import make_tiny_causal_lm

    model = make_tiny_causal_lm(tiny_root, "gpt2")
    out = tmp_path / "out"
    cmd = faults.command(["--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--limit", "8",
                          "--batch_size", "2",
                          "--metrics", "matrix_entropy", "--dist_timeout", "5"], out, ranks=2)
    proc = subprocess.Popen(cmd, env=faults.env(0.5), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while faults.stored_lines(out) < 2:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "no sample was stored in time"
            time.sleep(0.05)
        workers = _workers(proc.pid)
        assert sorted(workers) == [0, 1]
        other = 1 - stopped
        workers[stopped].send_signal(signal.SIGSTOP)
        since = time.monotonic()
        workers[other].wait(timeout=120)  # the other ends on its own: its share is done, then it waits 5 s at most
        elapsed = time.monotonic() - since
    finally:
        faults.kill_tree(proc.pid)  # torchrun would SIGTERM the stopped rank and SIGKILL it after 30 s
        proc.wait()
    err = proc.stderr.read()
    ours = [line for line in err.splitlines() if line.startswith("matrixeval: ")]
    assert ours == [ours[0]] and ours[0].startswith(
        f"matrixeval: error: rank {stopped} stopped responding: no heartbeat for 5 s (--dist_timeout) while rank "
        f"{other} waited"), err[-3000:]
    assert "Traceback" not in err.split("matrixeval: error:")[0]
    # Bounded by the timeout: at least 5 s of silence, then at most the other's own few batches and a poll later.
    assert 5 <= elapsed < 40, elapsed
    assert not list(out.rglob("results_*.json"))
