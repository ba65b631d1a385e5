"""Hand-made results files shared by the report tests (values chosen so ranks can be checked by hand)."""

import json

import pytest

MODELS = {  # name: n_params
    "EleutherAI__pythia-70m": 70_426_624,
    "EleutherAI__pythia-160m": 162_322_944,
    "EleutherAI__pythia-410m": 405_334_016,
    "EleutherAI__pythia-1b": 1_011_781_632,
    "EleutherAI__pythia-1.4b": 1_414_647_808,
}
# arc_easy entropies: lower is better, so D=1, E=2, B=C=3.5 (tie), A=5.
ARC_ENTROPY = [0.70, 0.66, 0.66, 0.60, 0.62]
ARC_ACCURACY = [0.40, 0.45, 0.52, 0.57, 0.60]
ARC_NUCLEAR = [0.30, 0.35, 0.33, 0.41, 0.40]  # lower is better: A=1, C=2, B=3, E=4, D=5


def wikitext_entropy(n_params):
    """An exact power law, so fits can be checked: 0.4 + 2.0 * N**-0.3."""
    return 0.4 + 2.0 * n_params**-0.3


def make_result(name, n_params, tasks):
    return {
        "results": tasks,
        "config": {"model_args": f"pretrained={name.replace('__', '/')}", "model_name": name, "n_params": n_params,
                   "hidden_size": 768, "num_layers": 12, "dtype": "float32", "layers": [12], "max_length": 2048},
        "higher_is_better": {"matrix_entropy": False, "effective_rank": False, "nuclear_norm": False, "loss": False,
                             "perplexity": False, "diff_erank": True, "accuracy": True},
        "versions": {"matrixeval": "0.1.0"},
        "date": "2026-11-23T21:00:00",
    }


def task_entry(entropy, **extra):
    return {
        "matrix_entropy": entropy,
        "matrix_entropy_stderr": 0.004,
        "matrix_entropy_ci95": [entropy - 0.008, entropy + 0.008],
        "loss": 10 * entropy,
        "n_samples": 100,
        "n_skipped": 2,
        "skipped_by_status": {"too_few_tokens": 2},
        "by_layer": {"12": {"matrix_entropy": entropy}, "6": {"matrix_entropy": entropy + 0.1}},
        **extra,
    }


@pytest.fixture
def results():
    """Five runs, deliberately not in size order."""
    runs = []
    for i, (name, n) in enumerate(MODELS.items()):
        tasks = {
            "wikitext": task_entry(wikitext_entropy(n)),
            "arc_easy": task_entry(ARC_ENTROPY[i], accuracy=ARC_ACCURACY[i], nuclear_norm=ARC_NUCLEAR[i]),
        }
        runs.append(make_result(name, n, tasks))
    return [runs[i] for i in (2, 0, 4, 1, 3)]


@pytest.fixture
def results_files(results, tmp_path):
    paths = []
    for r in results:
        path = tmp_path / f"{r['config']['model_name']}.json"
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths
