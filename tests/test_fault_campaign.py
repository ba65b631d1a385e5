"""The fault campaign inside `make test`: for every experiment, a SIGKILL at one kill point (two durable store
records) and a re-run of the same command end with results identical to an uninterrupted run's.
scripts/fault_runs.py --experiments runs more kill points per experiment."""

import pytest

from tests import fault_campaign as fc

NAMES = ["run", "sentence-ops", "prompt", "length", "sampling", "benchmark", "checkpoints", "multimodal", "responses", "adapter --train", "augment"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return {c.name: c for c in fc.cases(tmp_path_factory.mktemp("campaign-inputs"))}


def test_every_experiment_is_in_the_campaign(cases):
    assert sorted(cases) == sorted(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_kill_then_a_rerun_equals_an_uninterrupted_run(cases, name, tmp_path):
    case = cases[name]
    baseline, said_first = fc.run(case, tmp_path / "baseline")
    stored = fc.crash(case, tmp_path / "killed", after_lines=case.kill_points[0])
    resumed, said = fc.run(case, tmp_path / "killed")
    assert stored >= case.kill_points[0]
    assert fc.n_resumed(said) >= case.kill_points[0] - 1  # the re-run took the killed run's samples
    assert fc.n_resumed(said_first) == 0
    assert fc.numbers(resumed) == fc.numbers(baseline)
