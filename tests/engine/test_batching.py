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
