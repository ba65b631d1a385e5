"""Each caveat fires on records that call for it and stays silent on records that do not; a run carries them."""

import json
import math
import statistics

import pytest

from matrixeval import evaluate
from matrixeval.caveats import CaveatThresholds, entropy_ceiling, task_caveats
from matrixeval.report.tables import results_markdown
from tests.tiny_models import HIDDEN, make_tiny_causal_lm

LAYER = 3


def _records(n_tokens, *, truncated=(), losses=None, status=None):
    """Per-sample records as the engine writes them: token count and status per layer, loss when given."""
    out = []
    for i, n in enumerate(n_tokens):
        record = {"doc_id": i, "n_input_tokens": n, "truncated": i in truncated,
                  "layers": {str(LAYER): {"n_tokens": n, "status": (status or {}).get(i, "ok")}}}
        if losses is not None:
            record.update(loss=losses[i], nll_sum=losses[i] * n, n_targets=n)
        out.append(record)
    return out


def _codes(records, metrics, hidden_size=HIDDEN, **thresholds):
    entry = {"primary_layer": LAYER,
             "n_samples": sum(r["layers"][str(LAYER)]["status"] == "ok" for r in records),
             "n_truncated": sum(r["truncated"] for r in records)}
    found = task_caveats(records, entry, metrics=metrics, hidden_size=hidden_size,
                         thresholds=CaveatThresholds(**thresholds))
    return {c.code: c for c in found}


def test_few_samples_counts_valid_samples_only():
    assert "few_samples" not in _codes(_records([20] * 30), ["effective_rank"])
    # 31 samples, 2 of them not ok: 29 valid < 30
    codes = _codes(_records([20] * 31, status={0: "too_short", 1: "nonfinite"}), ["effective_rank"])
    assert "only 29 valid samples" in codes["few_samples"].message
    assert "few_samples" not in _codes(_records([20] * 10), ["effective_rank"], min_samples=10)


def test_truncated_above_ten_percent():
    assert "truncated" not in _codes(_records([20] * 40, truncated=range(4)), ["effective_rank"])  # 10 %: not above
    codes = _codes(_records([20] * 40, truncated=range(5)), ["effective_rank"])
    assert "5 of 40 samples (12%)" in codes["truncated"].message


def test_entropy_ceiling_states_log_n_over_log_d():
    tokens = [5, 7, 9, 11, 400] * 8  # median 9
    codes = _codes(_records(tokens), ["matrix_entropy"], hidden_size=384)
    ceiling = math.log(statistics.median(tokens)) / math.log(384)  # ≈ 0.369
    assert f"= {ceiling:.3f}" in codes["entropy_ceiling"].message
    # log(200)/log(384) ≈ 0.89 < 0.9 fires; log(250)/log(384) ≈ 0.928 does not
    assert "entropy_ceiling" in _codes(_records([200] * 40), ["matrix_entropy"], hidden_size=384)
    assert "entropy_ceiling" not in _codes(_records([250] * 40), ["matrix_entropy"], hidden_size=384)
    assert "entropy_ceiling" not in _codes(_records(tokens), ["nuclear_norm_exact"], hidden_size=384)  # no entropy
    assert "entropy_ceiling" in _codes(_records(tokens), ["diff_erank"], hidden_size=384)


def test_perplexity_dominated_by_the_top_one_percent():
    # 100 samples: one short heading with loss 12 (exp ≈ 162,755) against 99 at loss 8 (exp ≈ 2,981 each)
    losses = [12.0] + [8.0] * 99
    share = math.exp(12) / (math.exp(12) + 99 * math.exp(8))  # ≈ 0.355: below half
    assert share < 0.5
    assert "perplexity_dominated" not in _codes(_records([50] * 100, losses=losses), ["perplexity"])
    losses = [13.0] + [8.0] * 99
    share = math.exp(13) / (math.exp(13) + 99 * math.exp(8))  # ≈ 0.60
    codes = _codes(_records([50] * 100, losses=losses), ["perplexity"])
    assert f"carry {share:.0%}" in codes["perplexity_dominated"].message
    assert "top 1 of 100" in codes["perplexity_dominated"].message
    assert "perplexity_dominated" not in _codes(_records([50] * 100, losses=losses), ["loss"])


def test_nuclear_norm_full_rank_when_median_n_reaches_d():
    assert "nuclear_norm_full" not in _codes(_records([31] * 40), ["nuclear_norm"])  # d = 32
    codes = _codes(_records([10] * 10 + [32] * 30), ["nuclear_norm"])
    assert "median 32 tokens" in codes["nuclear_norm_full"].message
    assert "nuclear_norm_full" not in _codes(_records([32] * 40), ["nuclear_norm_exact"])


def test_run_writes_warnings_prints_them_and_lists_them_under_the_table(tiny_root, tiny_corpus, tmp_path, capsys):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    out = evaluate(f"pretrained={path}", f"{tiny_corpus}", metrics="matrix_entropy", output_path=tmp_path)
    written = json.loads(open(out["results_path"]).read())
    warnings = {w["code"]: w for w in written["results"]["tiny"]["warnings"]}
    n_valid = written["results"]["tiny"]["n_samples"]
    assert n_valid == 20 and "only 20 valid samples" in warnings["few_samples"]["message"]
    err = capsys.readouterr().err
    assert err.count("matrixeval: warning: task tiny: [few_samples] only 20 valid samples") == 1
    assert "`few_samples`: only 20 valid samples" in results_markdown(written)


def test_thresholds_pass_through_evaluate(tiny_root, tiny_corpus):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    out = evaluate(f"pretrained={path}", f"{tiny_corpus}", metrics="effective_rank", output_path=None,
                   caveats=CaveatThresholds(min_samples=20))
    assert out["results"]["tiny"]["warnings"] == []


def test_ceiling_is_one_from_n_equal_d():
    assert entropy_ceiling(32, 32) == 1.0 and entropy_ceiling(500, 32) == 1.0
    assert entropy_ceiling(4, 32) == pytest.approx(0.4)  # log 4 / log 32 = 2/5
    assert math.isnan(entropy_ceiling(0, 32))


def test_experiment_caveats_fire_above_their_thresholds_only():
    from matrixeval.caveats import arms_differ, curve_few_samples, timing_spread, unchanged_by_operation

    t = CaveatThresholds()
    assert unchanged_by_operation("shuffle", 4, 40, t) is None  # 10 %: not above
    assert "5 of 40 documents (12%)" in unchanged_by_operation("shuffle", 5, 40, t).message
    assert arms_differ("long", "none", 0, 6, t) is None
    assert "in 1 of 6 documents" in arms_differ("long", "none", 1, 6, t).message
    assert timing_spread("nuclear_norm", [1.0, 1.2, 1.1], t) is None  # 20 %: not above
    spread = timing_spread("nuclear_norm", [1.0, 1.3, 1.1], t)
    assert spread.code == "timing_spread" and "spread 30%" in spread.message
    assert timing_spread("x", [1.0], t) is None  # one repeat: no spread
    assert curve_few_samples("curve c", {64: 30, 128: 40}, t) is None
    few = curve_few_samples("curve c", {64: 30, 128: 29, 256: 1}, t)
    assert "2 of 3 points have fewer than 30 samples (128: n = 29, 256: n = 1)" in few.message


def test_thresholds_from_flags_and_report_prints_each_once(capsys):
    from matrixeval.caveats import Caveat, parse_thresholds, report

    t = parse_thresholds(["min_samples=5", "max_timing_spread=0.5"])
    assert t.min_samples == 5 and isinstance(t.min_samples, int) and t.max_timing_spread == 0.5
    assert parse_thresholds(None) == CaveatThresholds() and parse_thresholds({"min_samples": 2}).min_samples == 2
    entry = {}
    caveat = Caveat("timing_spread", "m", "a")
    report(entry, "tiny", [caveat, None])
    report(entry, "tiny", [caveat])
    assert entry["warnings"] == [caveat.as_dict()]
    assert capsys.readouterr().err == "matrixeval: warning: task tiny: [timing_spread] m; a\n"
