import csv

import numpy as np
import pytest

from matrixeval.report.compare import compare_table, fit_table, rank_models
from matrixeval.report.tables import columns_of, format_value, to_markdown, write_csv

FIT_COLUMNS = ["metric", "task", "L0", "k", "alpha", "r2", "n", "note"]


@pytest.mark.parametrize(
    "value, column, text",
    [
        (0.612345, "matrix_entropy", "0.6123"),
        (120.53, "effective_rank", "120.5"),
        (22.2149, "perplexity", "22.21"),
        (0.0041234, "matrix_entropy_stderr", "0.0041"),
        (0.000123, "kendall_p", "0.00012"),
        (162322944, "n_params", "162,322,944"),
        (np.int64(7), "n", "7"),
        (np.float64(0.61234), "matrix_entropy", "0.6123"),
        (float("nan"), "r2", "nan"),
        (None, "accuracy", ""),
        (True, "ok", "True"),
        ("a|b", "note", "a\\|b"),
    ],
)
def test_format_value(value, column, text):
    assert format_value(value, column) == text


def test_markdown_fit_table_has_documented_columns_and_lines_up(results):
    rows = fit_table(results, metrics="matrix_entropy")
    lines = to_markdown(rows, FIT_COLUMNS).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == FIT_COLUMNS
    assert len(lines) == 2 + len(rows)
    assert len({len(line) for line in lines}) == 1  # padded: every line has the same width
    assert lines[1].split("|")[3].strip().endswith(":")  # numeric columns right-aligned
    assert lines[1].split("|")[1].strip().startswith(":")  # text columns left-aligned
    assert "| wikitext |" in lines[3] and " 0.4 " in lines[3] and " -0.3 " in lines[3]


def test_markdown_leaves_missing_cells_empty(results):
    rows = compare_table(results)
    text = to_markdown(rows, ["model", "task", "accuracy"])
    wikitext_line = next(line for line in text.splitlines() if "wikitext" in line)
    assert wikitext_line.rstrip().endswith("|") and wikitext_line.split("|")[3].strip() == ""


def test_significant_digits_can_be_overridden():
    text = to_markdown([{"alpha": -0.3012345}], significant={"alpha": 2})
    assert text.splitlines()[-1] == "|  -0.3 |"  # right-aligned under the 5-wide header


def test_csv_roundtrip_keeps_columns_and_full_precision(results, tmp_path):
    rows = compare_table(results)
    path = write_csv(tmp_path / "out" / "compare.csv", rows)
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == columns_of(rows)
    assert list(read[0])[:3] == ["model", "n_params", "task"]
    assert len(read) == len(rows) == 10
    assert float(read[1]["matrix_entropy"]) == rows[1]["matrix_entropy"]  # repr round-trips exactly
    assert read[1]["accuracy"] == ""  # wikitext has none


def test_csv_of_rankings_with_chosen_columns(results, tmp_path):
    rows = rank_models(results, "matrix_entropy", by="mean_rank")
    path = write_csv(tmp_path / "rank.csv", rows, ["rank", "model", "mean_rank"])
    header, *body = path.read_text().splitlines()
    assert header == "rank,model,mean_rank"
    assert body[0].startswith("1.5,EleutherAI__pythia-")
