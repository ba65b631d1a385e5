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
from ..models.loading import text_config, unwrap
from .batching import Encoded, plan_batches
from .dist import World, gather_to_main
from .measure import MeasureConfig, measure_batch
from .store import ShardStore

logger = logging.getLogger(__name__)

AUTO_START = 64  # --batch_size auto: the planned batch size and the most samples tried at once
# A block's transient activations per token, in hidden-size units of the model's dtype: residual, norm,
# q/k/v/output projections and a 4x MLP with its activation (deliberately generous; OOM back-off covers the rest).
_ACTIVATION_WIDTHS = 24
_HEADROOM = 0.8  # use at most this share of the free memory
# Fault injection for tests/fault_runs.py: a pause after each durable batch, so a run can be killed mid-way.
_FAULT_DELAY = float(os.environ.get("MATRIXEVAL_FAULT_BATCH_DELAY", "0") or 0)


def fault_pause() -> None:
    """The fault campaign's pause after a durable write (MATRIXEVAL_FAULT_BATCH_DELAY seconds; none by default),
    so a kill can land between any two stored batches of any experiment."""
    if _FAULT_DELAY:
        time.sleep(_FAULT_DELAY)


def estimate_batch_size(
    free_bytes: int,
    n_tokens: int,
    *,
    hidden_size: int,
    n_layers_kept: int,
    dtype_bytes: int,
    vocab_size: int | None = None,
    num_heads: int = 0,
    cap: int = AUTO_START,
) -> int:
    """How many samples of `n_tokens` tokens one forward pass plus the metric core fit in `free_bytes`.

    A pure estimate (1 ≤ result ≤ cap) from what a batch holds at its peak: each sample's transient block
    activations, the captured hidden states of the kept layers, their float32 copies in the metric core and
    one float64 Gram matrix with eigensolver workspace per kept layer, the logits when `vocab_size` is given
    (loss), and `num_heads` N×N attention matrices when attention materialises them (CPU, eager). Back-off
    on out-of-memory corrects an estimate that is too high.
    """
    n, d, k = n_tokens, hidden_size, min(n_tokens, hidden_size)
    per_sample = (
        n * d * dtype_bytes * _ACTIVATION_WIDTHS
        + n_layers_kept * n * d * (dtype_bytes + 2 * 4)
        + n_layers_kept * k * k * 8 * 3
        + num_heads * n * n * dtype_bytes * 2
        + (n * vocab_size * dtype_bytes if vocab_size else 0)
    )
    once = n * vocab_size * 4 if vocab_size else 0  # one row's float32 logits for the NLL
    fits = (int(free_bytes * _HEADROOM) - once) // max(per_sample, 1)
    return int(max(1, min(cap, fits)))


def free_memory(device: torch.device) -> int | None:
    """Bytes a batch can still use on `device`: free device memory plus what torch's cache holds unused
    (CUDA), MemAvailable (CPU, Linux); None where unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


@dataclass
class BatchSizer:
    """The batch size in force: fixed, or `auto` (start from an estimate, halve on OOM, never skip a sample).

    `plan_size` groups samples into batches (fixed for the whole run, so a resumed run forms the same
    batches); `size` is how many of a batch's samples go through the model at once.
    """

    size: int
    auto: bool
    history: list[int] = field(default_factory=list)
    plan_size: int = 0

    def __post_init__(self) -> None:
        self.plan_size = self.plan_size or self.size

    @classmethod
    def parse(cls, spec: int | str) -> "BatchSizer":
        if spec == "auto":
            return cls(AUTO_START, True)
        return cls(int(spec), False)

    def start(self, lm: LoadedModel, n_tokens: int, cfg: MeasureConfig) -> None:
        """auto: lower the size to what the free memory should hold for samples of `n_tokens` tokens."""
        free = free_memory(lm.device) if self.auto else None
        if free is None or n_tokens == 0:
            return
        config = text_config(unwrap(lm.model).config)
        estimate = estimate_batch_size(
            free, n_tokens, hidden_size=lm.hidden_size, n_layers_kept=len(cfg.layers),
            dtype_bytes=lm.dtype.itemsize, vocab_size=getattr(config, "vocab_size", None) if cfg.need_loss else None,
            num_heads=getattr(config, "num_attention_heads", 0) if lm.device.type == "cpu" else 0, cap=self.size,
        )
        if estimate < self.size:
            logger.info("batch size auto: %d samples of %d tokens should fit in %.1f GiB free", estimate, n_tokens,
                        free / 2**30)
            self.size = estimate


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
    plan = plan_batches(encoded, sizer.plan_size)
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
    if todo:
        sizer.start(lm, max(len(encoded[j].input_ids) for batch in todo for j in batch), cfg)
    sizer.history.append(sizer.size)
    total = sum(len(b) for b in todo)
    quiet = not world.is_main or total == 0 or os.environ.get("TQDM_DISABLE") == "1"
    bar = tqdm(total=total, desc=desc, unit="sample", disable=quiet, leave=False)
    started = time.perf_counter()
    try:
        for batch in todo:
            items = [encoded[j] for j in batch]
            new = _measure_with_backoff(items, sizer, lambda chunk: measure_batch(lm, chunk, cfg, reference,
                                                                                   **_windows(cfg, sizer)))
            store.append(new)
            records.extend(new)
            fault_pause()
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
    except BaseException:
        # e.g. a full disk while storing: the bar ends its line, so the one error line is a line of its own
        bar.leave = True
        bar.close()
        raise
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


def _windows(cfg: MeasureConfig, sizer: BatchSizer) -> dict[str, int]:
    """Rolling mode: as many windows per forward pass as the batch size in force (it halves on OOM too)."""
    return {"window_batch": sizer.size} if cfg.rolling else {}


def _interrupted(task: str, n_stored: int, n_total: int, where: object) -> str:
    if where is None:
        return f"task {task!r} stopped; nothing is stored (no output_path or store), so a re-run starts over"
    return (f"{n_stored} of {n_total} samples of task {task!r} are stored in {str(where)!r}; "
            "re-run the same command to resume")


__all__ = ["AUTO_START", "BatchSizer", "TaskRun", "estimate_batch_size", "free_memory", "run_task"]
