"""Crash and resume for real: runs in subprocesses, SIGKILLed mid-way, resumed on 1 or 2 ranks.

The final JSON of every resumed run must carry bit-identical metric values to an uninterrupted run.
"""

import pytest

from tests import faults
from tests.tiny_models import make_tiny_causal_lm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tiny_root, tiny_corpus, tmp_path_factory):
    model = make_tiny_causal_lm(tiny_root, "gpt2")
    args = ["--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--batch_size", "2",
            "--metrics", "matrix_entropy,nuclear_norm,loss,perplexity", "--layers", "0,-1"]
    baseline = faults.run(args, tmp_path_factory.mktemp("baseline"))
    assert baseline["results"]["tiny"]["n_resumed"] == 0
    return args, baseline


@pytest.mark.parametrize("before,after", [(1, 1), (2, 1), (1, 2)])
def test_sigkill_then_resume_gives_identical_numbers(setup, tmp_path, before, after):
    args, baseline = setup
    done = faults.crash(args, tmp_path, before)
    assert 0 < done < 20, "the kill must land mid-way"
    assert not list(tmp_path.rglob("results_*.json")), "a killed run must not leave a results file"
    resumed = faults.run(args, tmp_path, after)
    assert resumed["results"]["tiny"]["n_resumed"] >= done - before  # a torn last line per writer is recomputed
    assert resumed["results"]["tiny"]["n_resumed"] > 0
    assert faults.numbers(resumed) == faults.numbers(baseline)
    assert resumed["config"]["world_size"] == after


def test_a_torn_store_line_is_recomputed(setup, tmp_path):
    args, baseline = setup
    done = faults.crash(args, tmp_path)
    faults.tear_last_line(tmp_path)
    resumed = faults.run(args, tmp_path)
    assert resumed["results"]["tiny"]["n_torn_store_lines"] == 1
    # the torn sample's batch (of 2) is measured again whole, so its partner is recomputed too
    assert resumed["results"]["tiny"]["n_resumed"] == done - 2
    assert faults.numbers(resumed) == faults.numbers(baseline)


def test_another_configuration_reuses_nothing(setup, tmp_path):
    args, _ = setup
    faults.run(args, tmp_path)
    other = faults.run([*args, "--max_length", "12"], tmp_path)
    assert other["results"]["tiny"]["n_resumed"] == 0


def test_two_gloo_ranks_equal_one_process(setup, tmp_path):
    args, baseline = setup
    two = faults.run(args, tmp_path, 2)
    assert two["config"]["world_size"] == 2
    assert faults.numbers(two) == faults.numbers(baseline)
