"""The loop every command shares: plan batches, skip what is stored, measure the rest, gather on rank 0."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import Interrupted
from ..models import LoadedModel
from .batching import Encoded, plan_batches
from .dist import World, gather_to_main
from .measure import MeasureConfig, measure_batch
from .store import ShardStore

logger = logging.getLogger(__name__)

AUTO_START = 64  # first batch size tried by --batch_size auto; halved on out-of-memory
# Fault injection for tests/fault_runs.py: a pause after each durable batch, so a run can be killed mid-way.
_FAULT_DELAY = float(os.environ.get("MATRIXEVAL_FAULT_BATCH_DELAY", "0") or 0)


@dataclass
class BatchSizer:
    """The batch size in force: fixed, or `auto` (start at AUTO_START, halve on OOM, never skip a sample)."""

    size: int
    auto: bool
    history: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: int | str) -> "BatchSizer":
        if spec == "auto":
            return cls(AUTO_START, True)
        return cls(int(spec), False)


@dataclass
class TaskRun:
    """What a task's run produced on rank 0: every sample's record, in doc_id order, and bookkeeping."""

    records: list[dict[str, Any]]
    n_resumed: int
    n_torn: int


def _measure_with_backoff(
    items: Sequence[Encoded], sizer: BatchSizer, measure: Callable[[Sequence[Encoded]], list[dict]]
) -> list[dict]:
    """Measure `items` in chunks of the current size; on OOM halve and retry the same samples."""
    out: list[dict] = []
    start = 0
    while start < len(items):
        chunk = items[start : start + sizer.size]
        try:
            out.extend(measure(chunk))
        except torch.OutOfMemoryError:
            if len(chunk) == 1 or not sizer.auto:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            sizer.size = max(1, len(chunk) // 2)
            sizer.history.append(sizer.size)
            logger.warning("out of memory at batch size %d; retrying the same samples at %d", len(chunk), sizer.size)
            continue
        start += len(chunk)
    return out


def run_task(
    lm: LoadedModel,
    encoded: Sequence[Encoded],
    cfg: MeasureConfig,
    store: ShardStore,
    world: World,
    sizer: BatchSizer,
    *,
    reference: LoadedModel | None = None,
    desc: str = "",
) -> TaskRun | None:
    """Measure every sample of a task once, durably; return all records on rank 0 and None elsewhere.

    Batches are planned over all samples and dealt round-robin to ranks, so a batch always holds the same
    samples whatever the world size or how much was done before. A batch whose samples are all stored is
    skipped; any other is measured whole and appended to this writer's shard before the next begins.
    """
    done = store.load()
    plan = plan_batches(encoded, sizer.size)
    mine = [batch for i, batch in enumerate(plan) if i % world.size == world.rank]
    records: list[dict[str, Any]] = []
    n_resumed = n_tokens = 0
    todo = []
    for batch in mine:
        stored = [done.get(encoded[j].doc_id) for j in batch]
        if all(r is not None for r in stored):
            records.extend(stored)
            n_resumed += len(stored)
        else:
            todo.append(batch)
    sizer.history.append(sizer.size)
    total = sum(len(b) for b in todo)
    quiet = not world.is_main or total == 0 or os.environ.get("TQDM_DISABLE") == "1"
    bar = tqdm(total=total, desc=desc, unit="sample", disable=quiet, leave=False)
    started = time.perf_counter()
    try:
        for batch in todo:
            items = [encoded[j] for j in batch]
            new = _measure_with_backoff(items, sizer, lambda chunk: measure_batch(lm, chunk, cfg, reference))
            store.append(new)
            records.extend(new)
            if _FAULT_DELAY:
                time.sleep(_FAULT_DELAY)
            n_tokens += sum(len(it.input_ids) for it in items)
            bar.update(len(items))
            bar.set_postfix(tok_s=f"{n_tokens / max(time.perf_counter() - started, 1e-9):.0f}")
    except KeyboardInterrupt:
        # Ctrl-C lands between two Python steps, so at most the batch in progress is lost: every batch
        # appended before it is durable. What the store holds is counted from the store itself, since the
        # signal may land while a batch is being fsync'd.
        bar.close()
        store.close()
        where = getattr(store, "directory", None)
        raise Interrupted(_interrupted(desc, len(store.load()), len(encoded), where)) from None
    bar.close()
    store.close()
    gathered = gather_to_main((records, n_resumed, store.n_torn), world)
    if gathered is None:
        return None
    merged = sorted((r for part in gathered for r in part[0]), key=lambda r: r["doc_id"])
    return TaskRun(
        records=merged,
        n_resumed=sum(part[1] for part in gathered),
        n_torn=max(part[2] for part in gathered),
    )


def _interrupted(task: str, n_stored: int, n_total: int, where: object) -> str:
    if where is None:
        return f"task {task!r} stopped; nothing is stored (no output_path or store), so a re-run starts over"
    return (f"{n_stored} of {n_total} samples of task {task!r} are stored in {str(where)!r}; "
            "re-run the same command to resume")


__all__ = ["AUTO_START", "BatchSizer", "TaskRun", "run_task"]
