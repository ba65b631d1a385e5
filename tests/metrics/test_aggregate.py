import math
import statistics

import pytest
import torch

from matrixeval import aggregate, diff_erank, summarize


def test_three_dataset_values_and_skips():
    h = [2.0, 3.0, float("nan"), 4.0]
    d = 16
    agg = aggregate(h, d)
    finite = [2.0, 3.0, 4.0]
    assert agg.a.mean == pytest.approx(statistics.mean(x / math.log(d) for x in finite))
    assert agg.b == pytest.approx(math.exp(statistics.mean(finite)) / d)
    assert agg.c == pytest.approx(statistics.mean(math.exp(x) for x in finite) / d)
    assert agg.n == 3 and agg.n_skipped == 1
    assert agg.a.stderr == pytest.approx(statistics.stdev(x / math.log(d) for x in finite) / math.sqrt(3))


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = torch.randn(200, generator=torch.Generator().manual_seed(0)).tolist()
    s1, s2, s3 = summarize(x, seed=1), summarize(x, seed=1), summarize(x, seed=2)
    assert s1.ci95 == s2.ci95 and s1.ci95 != s3.ci95
    assert s1.ci95[0] < s1.mean < s1.ci95[1]
    # the percentile interval's half-width is close to 1.96 standard errors for a mean
    assert (s1.ci95[1] - s1.ci95[0]) / 2 == pytest.approx(1.96 * s1.stderr, rel=0.2)


def test_summary_of_nothing_is_nan_not_an_error():
    s = summarize([float("nan")])
    assert math.isnan(s.mean) and s.n == 0 and s.n_skipped == 1


def test_concatenated_parts_give_the_one_shot_answer():
    x = torch.randn(50, dtype=torch.float64)
    assert summarize(torch.cat([x[:20], x[20:]])).mean == summarize(x).mean


def test_diff_erank_pairs_samples():
    h0, h1 = [3.0, 2.5, float("nan")], [2.0, 2.5, 1.0]
    s = diff_erank(h0, h1)
    assert s.mean == pytest.approx(((math.exp(3) - math.exp(2)) + 0.0) / 2)
    assert s.n == 2 and s.n_skipped == 1
    with pytest.raises(ValueError, match="paired"):
        diff_erank([1.0], [1.0, 2.0])
