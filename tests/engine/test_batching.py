import pytest
import torch

from matrixeval import evaluate
from matrixeval.engine import runner
from tests.tiny_models import make_tiny_causal_lm


def test_plan_is_length_sorted_and_independent_of_what_is_done():
    from matrixeval.engine.batching import Encoded, plan_batches

    items = [Encoded(i, tuple(range(n)), False) for i, n in enumerate([3, 9, 1, 9, 5])]
    assert plan_batches(items, 2) == [[1, 3], [4, 0], [2]]


def test_oom_halves_and_retries_the_same_batch(tiny_root, tiny_corpus, monkeypatch, caplog):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    real = runner.measure_batch
    sizes = []

    def limited(lm, chunk, cfg, reference=None):  # a fake allocator limit: more than 4 samples do not fit
        sizes.append(len(chunk))
        if len(chunk) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(lm, chunk, cfg, reference)

    monkeypatch.setattr(runner, "measure_batch", limited)
    out = evaluate(f"pretrained={path}", str(tiny_corpus), batch_size="auto", output_path=None)
    monkeypatch.setattr(runner, "measure_batch", real)
    fixed = evaluate(f"pretrained={path}", str(tiny_corpus), batch_size=4, output_path=None)
    # the one planned batch holds all 20 samples: 20, 10 and 5 fail, then the same samples go through in 2s
    assert sizes == [20, 10, 5] + [2] * 10
    assert out["results"]["tiny"]["n_samples"] == 20  # nothing skipped
    assert out["config"]["batch_sizes_used"] == [runner.AUTO_START, 10, 5, 2]
    assert "out of memory at batch size" in caplog.text
    for metric in ("matrix_entropy", "loss"):
        assert out["results"]["tiny"][metric] == pytest.approx(fixed["results"]["tiny"][metric], abs=1e-6)


def test_oom_with_a_fixed_batch_size_is_not_hidden(tiny_root, tiny_corpus, monkeypatch):
    path = make_tiny_causal_lm(tiny_root, "gpt2")

    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(runner, "measure_batch", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        evaluate(f"pretrained={path}", str(tiny_corpus), batch_size=8, output_path=None)


def test_estimate_from_free_memory_by_hand():
    # 7B-shaped, bf16, last layer, loss: per sample 512·4096·2·24 (block activations) + 512·4096·(2 + 8)
    # (hidden state + float32 copies) + 512²·8·3 (Gram + workspace) + 512·32000·2 (logits) = 160_694_272 B,
    # once 512·32000·4 = 65_536_000 B; 0.8 · 10 GiB leaves room for 53 samples.
    est = runner.estimate_batch_size(10 * 2**30, 512, hidden_size=4096, n_layers_kept=1, dtype_bytes=2,
                                     vocab_size=32000, cap=1000)
    assert est == 53


def test_estimate_is_monotone_and_clamped():
    kw = dict(hidden_size=2048, n_layers_kept=1, dtype_bytes=2, vocab_size=32000)
    sizes = [runner.estimate_batch_size(80 * 2**30, n, cap=10_000, **kw) for n in (256, 512, 1024, 2048, 4096)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1] > 1
    assert runner.estimate_batch_size(0, 512, **kw) == 1  # nothing fits: still one sample, OOM decides
    assert runner.estimate_batch_size(2**50, 512, **kw) == runner.AUTO_START  # never above the cap
    more_layers = runner.estimate_batch_size(80 * 2**30, 2048, n_layers_kept=23, hidden_size=2048, dtype_bytes=2)
    assert more_layers < runner.estimate_batch_size(80 * 2**30, 2048, n_layers_kept=1, hidden_size=2048, dtype_bytes=2)
    quadratic = runner.estimate_batch_size(80 * 2**30, 4096, num_heads=32, cap=10_000, **kw)
    assert quadratic < sizes[-1]


def test_auto_starts_from_the_free_memory_estimate_and_backs_off(tiny_root, tiny_corpus, monkeypatch, caplog):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    real = runner.measure_batch
    sizes = []

    def limited(lm, chunk, cfg, reference=None):
        sizes.append(len(chunk))
        if len(chunk) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(lm, chunk, cfg, reference)

    monkeypatch.setattr(runner, "measure_batch", limited)
    monkeypatch.setattr(runner, "free_memory", lambda device: 0)  # a device with nothing free: one at a time
    out = evaluate(f"pretrained={path}", str(tiny_corpus), batch_size="auto", output_path=None)
    assert sizes == [1] * 20 and out["config"]["batch_sizes_used"] == [1]
    sizes.clear()
    # plenty free: the estimate is capped at AUTO_START, the fake allocator limit halves it down to 2
    monkeypatch.setattr(runner, "free_memory", lambda device: 2**40)
    out = evaluate(f"pretrained={path}", str(tiny_corpus), batch_size="auto", output_path=None)
    assert sizes == [20, 10, 5] + [2] * 10
    assert out["results"]["tiny"]["n_samples"] == 20


def test_auto_plan_does_not_depend_on_free_memory(tiny_root, tiny_corpus, monkeypatch):
    """Batches are planned at AUTO_START whatever fits: a resumed run on a fuller device groups the same samples."""
    from matrixeval.engine.batching import plan_batches

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    seen = []
    real_plan = plan_batches

    def spy(items, size):
        seen.append(size)
        return real_plan(items, size)

    monkeypatch.setattr(runner, "plan_batches", spy)
    for free in (0, 2**40):
        monkeypatch.setattr(runner, "free_memory", lambda device, free=free: free)
        evaluate(f"pretrained={path}", str(tiny_corpus), batch_size="auto", output_path=None)
    assert seen == [runner.AUTO_START, runner.AUTO_START]


def test_free_memory_on_cpu_is_at_most_the_physical_memory():
    import os

    free = runner.free_memory(torch.device("cpu"))
    if not os.path.exists("/proc/meminfo"):
        assert free is None
        return
    assert 0 < free <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
