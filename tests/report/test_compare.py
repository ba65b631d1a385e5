
import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from matrixeval.errors import MatrixEvalError
from matrixeval.report.compare import (
    compare_table,
    correlations,
    fit_scaling,
    fit_table,
    load_results,
    model_name,
    rank_models,
    series_by_model,
)

from .conftest import ARC_ACCURACY, ARC_ENTROPY, ARC_NUCLEAR, MODELS, make_result, task_entry

NAMES = list(MODELS)  # in size order: A=70m, B=160m, C=410m, D=1b, E=1.4b


def test_load_results_reads_every_file_in_order(results_files, results):
    assert [model_name(r) for r in load_results(results_files)] == [model_name(r) for r in results]
    assert len(load_results(results_files[0])) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ("{not json", "not valid JSON"),
        ('{"config": {}}', 'no "results"'),
        ("[1, 2]", 'no "results"'),
    ],
)
def test_load_results_errors_are_one_line(tmp_path, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MatrixEvalError, match=message) as err:
        load_results([path])
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_load_results_refuses_a_directory(tmp_path):
    with pytest.raises(MatrixEvalError, match="is a directory"):
        load_results(tmp_path)


def test_model_name_falls_back_to_model_args():
    result = {"results": {}, "config": {"model_args": "pretrained=EleutherAI/pythia-160m,dtype=float32"}}
    assert model_name(result) == "EleutherAI__pythia-160m"


def test_compare_table_has_one_row_per_model_and_task_ordered_by_size(results):
    rows = compare_table(results)
    assert [(r["model"], r["task"]) for r in rows] == [(n, t) for n in NAMES for t in ("arc_easy", "wikitext")]
    assert [r["n_params"] for r in rows[::2]] == sorted(MODELS.values())
    first = rows[0]
    assert list(first)[:3] == ["model", "n_params", "task"]
    assert first["matrix_entropy"] == ARC_ENTROPY[0] and first["accuracy"] == ARC_ACCURACY[0]
    assert first["matrix_entropy_ci95_lo"] == pytest.approx(ARC_ENTROPY[0] - 0.008)
    assert first["matrix_entropy_ci95_hi"] == pytest.approx(ARC_ENTROPY[0] + 0.008)
    assert "by_layer" not in first and "skipped_by_status" not in first and "matrix_entropy_ci95" not in first
    assert "accuracy" not in rows[1]  # wikitext has no accuracy


def test_compare_table_per_layer_and_without_x(results):
    rows = compare_table(results, x=None, layer=6)
    assert [r["model"] for r in rows[::2]] == [model_name(r) for r in results]  # input order
    assert rows[0] == {"model": model_name(results[0]), "task": "arc_easy", "matrix_entropy": pytest.approx(0.66 + 0.1)}
    with pytest.raises(MatrixEvalError, match="available layers: 12, 6"):
        compare_table(results, layer=3)
    with pytest.raises(MatrixEvalError, match="hidden_sizes"):
        compare_table(results, x="hidden_sizes")


def test_fit_table_recovers_the_wikitext_power_law(results):
    rows = fit_table(results, x="n_params", metrics="matrix_entropy")
    assert [(r["metric"], r["task"]) for r in rows] == [("matrix_entropy", "arc_easy"), ("matrix_entropy", "wikitext")]
    wiki = rows[1]
    assert list(wiki) == ["metric", "task", "L0", "L0_stderr", "k", "k_stderr", "alpha", "alpha_stderr", "r2", "n",
                          "note"]
    assert (wiki["L0"], wiki["k"], wiki["alpha"]) == pytest.approx((0.4, 2.0, -0.3), rel=1e-2)
    assert wiki["n"] == 5 and wiki["note"] == ""
    assert fit_scaling(results, "matrix_entropy")["wikitext"].alpha == pytest.approx(-0.3, rel=1e-2)


def test_fit_table_notes_missing_models_and_ill_posed_fits(results):
    rows = fit_table(results, metrics=["accuracy", "nuclear_norm"])
    expected = [("accuracy", "arc_easy", 5), ("nuclear_norm", "arc_easy", 5)]
    assert [(r["metric"], r["task"], r["n"]) for r in rows] == expected
    few = fit_table(results[:3], metrics="matrix_entropy")
    assert all("at least 4" in r["note"] and np.isnan(r["alpha"]) for r in few)
    results[0]["results"]["wikitext"]["matrix_entropy"] = float("nan")
    wiki = fit_table(results, metrics="matrix_entropy")[1]
    assert wiki["n"] == 4 and "1 model(s) without a finite value" in wiki["note"]
    with pytest.raises(MatrixEvalError, match="no results contain metric 'bleu'; pick one of: matrix_entropy"):
        fit_table(results, metrics="bleu")


def test_fit_table_defaults_to_declared_metrics(results):
    assert {r["metric"] for r in fit_table(results)} == {"matrix_entropy", "loss", "accuracy", "nuclear_norm"}


def test_rank_models_within_one_task_lower_is_better(results):
    rows = rank_models(results, "matrix_entropy", task="arc_easy")
    ranks = {r["model"]: r["rank"] for r in rows}  # by hand: D=1, E=2, B=C=3.5 (tie), A=5
    assert ranks == dict(zip(NAMES, [5.0, 3.5, 3.5, 1.0, 2.0]))
    assert [r["rank"] for r in rows] == sorted(ranks.values())
    assert rows[0]["matrix_entropy"] == ARC_ENTROPY[3]


def test_rank_models_nuclear_norm_lower_is_better_and_override(results):
    ranks = {r["model"]: r["rank"] for r in rank_models(results, "nuclear_norm", task="arc_easy")}
    assert ranks == dict(zip(NAMES, [1.0, 3.0, 2.0, 5.0, 4.0]))
    rows = rank_models(results, "nuclear_norm", task="arc_easy", higher_is_better=True)
    flipped = {r["model"]: r["rank"] for r in rows}
    assert flipped == dict(zip(NAMES, [5.0, 3.0, 4.0, 1.0, 2.0]))


def test_rank_models_ignores_a_stale_file_direction_for_matrixevals_metrics(results):
    for r in results:  # files written before nuclear_norm's direction was corrected
        r["higher_is_better"]["nuclear_norm"] = True
    ranks = {r["model"]: r["rank"] for r in rank_models(results, "nuclear_norm", task="arc_easy")}
    assert ranks == dict(zip(NAMES, [1.0, 3.0, 2.0, 5.0, 4.0]))


def test_rank_models_by_mean_over_tasks_like_table_4(results):
    rows = rank_models(results, "matrix_entropy")
    by_model = {r["model"]: r for r in rows}
    for i, name in enumerate(NAMES):  # the average of each model's two task values, by hand
        wiki = 0.4 + 2.0 * MODELS[name] ** -0.3
        assert by_model[name]["average"] == pytest.approx((ARC_ENTROPY[i] + wiki) / 2)
        assert by_model[name]["arc_easy"] == ARC_ENTROPY[i] and by_model[name]["wikitext"] == pytest.approx(wiki)
    order = sorted(NAMES, key=lambda n: by_model[n]["average"])  # lower is better
    assert [r["model"] for r in rows] == order and [r["rank"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(rows[0]) == ["rank", "model", "average", "arc_easy", "wikitext"]
    # D and E tie on mean rank (1.5, below); the mean separates them: D's is lower
    assert rows[0]["model"] == "EleutherAI__pythia-1b"
    with pytest.raises(MatrixEvalError, match="unknown ranking"):
        rank_models(results, "matrix_entropy", by="median")


def test_rank_models_averages_ranks_across_tasks(results):
    rows = rank_models(results, "matrix_entropy", by="mean_rank")
    # wikitext falls with size: A=5, B=4, C=3, D=2, E=1. Mean with arc_easy: A 5, B 3.75, C 3.25, D 1.5, E 1.5.
    mean = {r["model"]: r["mean_rank"] for r in rows}
    assert mean == dict(zip(NAMES, [5.0, 3.75, 3.25, 1.5, 1.5]))
    assert {r["model"]: r["rank"] for r in rows} == dict(zip(NAMES, [5.0, 4.0, 3.0, 1.5, 1.5]))
    assert rows[-1] == {"rank": 5.0, "model": NAMES[0], "mean_rank": 5.0, "arc_easy": 5.0, "wikitext": 5.0}


def test_rank_models_names_a_metric_no_file_holds_before_asking_for_its_direction(results):
    # Before: "the results declare no higher_is_better for 'nosuchmetric'", as if a direction were the problem.
    for task in (None, "wikitext"):
        with pytest.raises(MatrixEvalError, match="no results contain metric 'nosuchmetric'; pick one of: .*matrix_entropy"):
            rank_models(results, "nosuchmetric", task=task)


def test_rank_models_needs_a_declared_direction_for_metrics_it_does_not_know(results):
    for r in results:
        r["results"]["wikitext"]["bleu"] = 1.0 / r["config"]["n_params"]
    with pytest.raises(MatrixEvalError, match="declare no higher_is_better for 'bleu'.*--higher_is_better"):
        rank_models(results, "bleu", task="wikitext")
    for r in results:
        r["higher_is_better"]["bleu"] = True
    assert rank_models(results, "bleu", task="wikitext")[0]["model"] == NAMES[0]  # the smallest has the largest
    results[0]["higher_is_better"]["bleu"] = False
    with pytest.raises(MatrixEvalError, match="disagree on"):
        rank_models(results, "bleu", task="wikitext")
    assert rank_models(results, "bleu", task="wikitext", higher_is_better=False)[0]["model"] == NAMES[-1]


def test_correlations_match_scipy(results):
    rows = correlations(results, ["matrix_entropy", "nuclear_norm"], task="arc_easy")
    for row, values in zip(rows, (ARC_ENTROPY, ARC_NUCLEAR)):
        rho, tau = spearmanr(values, ARC_ACCURACY), kendalltau(values, ARC_ACCURACY)
        assert row["n"] == 5 and row["note"] == ""
        assert row["spearman"] == pytest.approx(rho.statistic) and row["spearman_p"] == pytest.approx(rho.pvalue)
        assert row["kendall"] == pytest.approx(tau.statistic) and row["kendall_p"] == pytest.approx(tau.pvalue)
    assert rows[0]["spearman"] < 0  # lower entropy goes with higher accuracy here


def test_correlations_by_hand_on_monotone_data():
    runs = [make_result(f"m{i}", 10**i, {"t": task_entry(1.0 - 0.1 * i, accuracy=0.1 * i)}) for i in range(1, 5)]
    (row,) = correlations(runs, "matrix_entropy")
    assert row["spearman"] == pytest.approx(-1.0) and row["kendall"] == pytest.approx(-1.0)


def test_correlations_explain_missing_accuracy_and_too_few_models(results):
    wiki = correlations(results, "matrix_entropy", task="wikitext")[0]
    assert np.isnan(wiki["spearman"]) and "no 'accuracy'" in wiki["note"]
    two = correlations(results[:2], "matrix_entropy", task="arc_easy")[0]
    assert np.isnan(two["kendall"]) and "at least 3" in two["note"]


def test_series_by_model_groups_runs_by_model_and_sorts_by_x():
    runs = [make_result("m", 1, {"t": task_entry(e)}) for e in (0.5, 0.6, 0.7)]
    for run, length in zip(runs, (1024, 256, 512)):
        run["config"]["max_length"] = length
    series = series_by_model(runs, "matrix_entropy", "max_length", "t")
    assert series == {"m": ([256.0, 512.0, 1024.0], [0.6, 0.7, 0.5])}
