"""Data parallelism on torch.distributed as launched by torchrun or `accelerate launch`.

No rank waits for another without a bound. Every rank bumps a heartbeat counter in the launcher's key-value store
every second (a background thread, so it stops when the process stops, is SIGSTOPped or dies), and before every
collective each rank says it has arrived and waits for the others while watching their heartbeats: a rank whose
heartbeat has not moved for ``--dist_timeout`` seconds (default 600) has stalled or died, and every rank still
alive stops with one line naming it. A rank that is merely slower (more work, a longer text) keeps beating and is
waited for however long it takes. The process group's own timeout (gloo, nccl) is the same value, as a backstop.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist

from ..errors import MatrixEvalError

DEFAULT_TIMEOUT = 600.0  # seconds a rank may go without a heartbeat before the others give up on it
_PREFIX = "matrixeval/"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout: float = DEFAULT_TIMEOUT

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_sync = {"seq": 0, "beat": None}  # this process's synchronisation count and heartbeat thread


def init_world(device: str | None, timeout: float = DEFAULT_TIMEOUT) -> World:
    """Join the process group that the launcher described in the environment (WORLD_SIZE, RANK, ...).

    gloo on CPU, nccl on CUDA, both with `timeout` seconds as the process group's timeout; starts this rank's
    heartbeat. A plain `python -m matrixeval` run is a world of one and starts nothing.
    """
    if not (timeout > 0):
        raise MatrixEvalError(f"--dist_timeout must be a positive number of seconds, got {timeout!r}")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(timeout=timeout)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if cuda:
            torch.cuda.set_device(local_rank)
        elif "OMP_NUM_THREADS" not in os.environ:
            # CPU ranks on one machine share its cores; without this each would start one thread per core.
            local = int(os.environ.get("LOCAL_WORLD_SIZE", size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        torch_dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    if _sync["beat"] is None:
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(_store(), rank, min(1.0, timeout / 5), stop), daemon=True,
                                name="matrixeval-heartbeat")
        beat.start()
        _sync["beat"] = beat
        # Stopped before the interpreter tears down: a thread still inside a store call at exit aborts the process.
        atexit.register(_stop_heartbeat, beat, stop)
    return World(rank=rank, size=size, local_rank=local_rank, timeout=timeout)


def _store() -> Any:
    """The key-value store the process group was set up through (the launcher's rendezvous store)."""
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def _heartbeat(store: Any, rank: int, period: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            store.add(f"{_PREFIX}beat/{rank}", 1)
        except Exception:  # noqa: BLE001 - the store is gone (the launcher ended): nothing left to tell
            return
        stop.wait(period)


def _stop_heartbeat(beat: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    beat.join(timeout=10)


def wait_for_all(world: World) -> None:
    """Block until every rank has reached this same point (the n-th call on each rank), or raise one line
    naming the rank whose heartbeat stopped for `world.timeout` seconds."""
    if world.size == 1:
        return
    _sync["seq"] += 1
    try:
        _wait(world, _store(), _sync["seq"])
    except MatrixEvalError:
        raise
    except Exception as err:  # noqa: BLE001 - the store itself timed out or is gone: its host stalled or died
        raise MatrixEvalError(
            f"rank {world.rank}: the launcher's rendezvous store did not answer within {world.timeout:g} s "
            f"(--dist_timeout; {type(err).__name__}); the process holding it (the launcher, or rank 0) stalled or "
            "died. This rank stops too; samples stored so far are kept and the same command resumes them") from None


def _wait(world: World, store: Any, seq: int) -> None:
    store.set(f"{_PREFIX}at/{seq}/{world.rank}", "1")
    keys = {r: f"{_PREFIX}at/{seq}/{r}" for r in range(world.size) if r != world.rank}
    seen: dict[int, tuple[int, float]] = {}
    while keys:
        now = time.monotonic()
        for r in list(keys):
            if store.check([keys[r]]):
                del keys[r]
                continue
            beats = int(store.add(f"{_PREFIX}beat/{r}", 0))
            if r not in seen or seen[r][0] != beats:
                seen[r] = (beats, now)
            elif now - seen[r][1] > world.timeout:
                raise MatrixEvalError(
                    f"rank {r} stopped responding: no heartbeat for {world.timeout:g} s (--dist_timeout) while rank "
                    f"{world.rank} waited for it; it stalled (e.g. SIGSTOP, a hung device) or died. This rank stops "
                    "too; samples stored so far are kept and the same command resumes them")
        if keys:
            time.sleep(0.1)


def _collective(world: World, op: Any, *args: Any, **kwargs: Any) -> None:
    """Run a collective once every rank has arrived; a failure inside it (a rank lost between) is one line."""
    wait_for_all(world)
    try:
        op(*args, **kwargs)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise MatrixEvalError(f"rank {world.rank}: a collective with the other ranks failed ({first}); another "
                              "rank died or its connection broke. Samples stored so far are kept and the same "
                              "command resumes them") from None


def rank_gpus(world: World, n_gpus: int) -> list[int]:
    """The GPUs this rank's `device_map=auto` model may spread over: the node's GPUs split evenly among its
    ranks, so data parallelism and model sharding combine without two ranks sharing a GPU."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    per_rank = n_gpus // local
    if per_rank < 1:
        return [world.local_rank % max(n_gpus, 1)] if n_gpus else []
    return list(range(world.local_rank * per_rank, (world.local_rank + 1) * per_rank))


def gather_to_main(obj: Any, world: World) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (in rank order), None elsewhere."""
    if world.size == 1:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    _collective(world, torch_dist.gather_object, obj, out, dst=0)
    return out


def broadcast_from_main(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    _collective(world, torch_dist.broadcast_object_list, box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        _collective(world, torch_dist.barrier)
