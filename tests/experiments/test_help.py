"""Every command's --help says what it reproduces and what its output columns mean."""

import pytest

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments import _common

EXPERIMENTS = {
    "length": ["Fig. 2", "Table 13", "length", "n_docs", "--min_tokens", "(default: 512)", "dropped with a warning",
               "Default --tasks: pydoc_topics"],
    "sentence-ops": ["Fig. 3", "reverse_order", "reverse_words", "shuffle_reverse_words", "<metric>_delta",
                     "<metric>_delta_stderr", "(default: base,shuffle,reverse_words,shuffle_reverse_words",
                     "Default --tasks: pydoc_topics", "95% bootstrap interval"],
    "prompt": ["Table 3", "OpenOrca", "mean_matrix_tokens", "<metric>_delta", "Help as much as you can.",
               "User will you give you a task.", "openorca_system"],
    "adapter": ["Table 2", "<metric>_base", "<metric>_adapter"],
    "sampling": ["Table 7", "Table 5", "<metric>_mean", "<metric>_std", "FRESH", "whole corpus", "--sample_seed",
                 "(default: 10,50,100)", "capped", "Default --tasks: pydoc_topics", "SIZE:N"],
    "timing": ["Tables 1 and 6", "reference_s", "reference_over_nuclear", "max_abs_diff", "--end_to_end",
               "end_to_end_matrixeval_s", "(default: 32)"],
    "benchmark": ["Table 1", "accuracy", "acc_norm", "n_questions", "(default: openbookqa,winogrande,piqa)"],
    "responses": ["§6", "Table 2", "mean_response_tokens", "n_skipped", "(default: alpaca_eval,arena_hard)",
                  "temperature 0.7", "--score_context", "tokenised alone"],
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", name, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Output columns" in text and "--model_args" in text
    for phrase in EXPERIMENTS[name]:
        assert phrase in text, phrase


def test_compare_help(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("Tables 1, 8, 9", "Table 4", "L0 + k·x^α", "--rank", "spearman", "ill-posed"):
        assert phrase in text, phrase


def test_unknown_shared_option_is_an_error():
    with pytest.raises(MatrixEvalError, match="unknown option 'limt'"):
        _common.options({"limt": 3})
    with pytest.raises(MatrixEvalError, match="lengths must hold positive integers"):
        _common.positive_ints("64,-1", "lengths")
