import json
import random
from pathlib import Path

import pytest

from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm


@pytest.fixture(scope="session")
def gpt2_path(tiny_root) -> Path:
    return make_tiny_causal_lm(tiny_root, "gpt2")


@pytest.fixture(scope="session")
def llama_path(tiny_root) -> Path:
    return make_tiny_causal_lm(tiny_root, "llama")


def sentence(text: str) -> str:
    """A tiny text as a sentence the splitter recognises: capitalised, ending in a full stop."""
    text = text.rstrip(" .?")
    return text[0].upper() + text[1:] + "."


@pytest.fixture(scope="session")
def sentences_corpus(tmp_path_factory) -> Path:
    """12 documents of 3 to 5 sentences each."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("sentences") / "sents.jsonl"
    with open(path, "w") as f:
        for i in range(12):
            f.write(json.dumps({"text": " ".join(sentence(rng.choice(TINY_TEXTS)) for _ in range(3 + i % 3))}) + "\n")
    return path


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def samples(out: dict, variant: str) -> list[dict]:
    """The per-sample records that a run with log_samples wrote for `variant`."""
    stem = Path(out["results_path"]).name.split("_", 1)[1].removesuffix(".json")
    return read_jsonl(Path(out["results_path"]).parent / f"samples_{variant.replace('/', '__')}_{stem}.jsonl")


def check_outputs(out: dict, columns: list[str]) -> None:
    """The table has `columns` in the JSON, the Markdown and the CSV, and every plot is a real PNG."""
    import csv

    on_disk = json.loads(Path(out["outputs"]["json"]).read_text())
    present = {k for row in on_disk["table"] for k in row}
    assert on_disk["table"] and set(columns) <= present, sorted(present)
    markdown = Path(out["outputs"]["markdown"]).read_text()
    header = markdown.splitlines()[0]
    assert all(f" {c} " in header for c in columns), header
    for task, entry in on_disk["results"].items():  # every task's caveats are listed under the table
        for w in entry.get("warnings", []) if isinstance(entry, dict) else []:
            assert f"**{task}** `{w['code']}`: {w['message']}" in markdown
    with open(out["outputs"]["csv"]) as f:
        assert set(columns) <= set(next(csv.reader(f)))
    for plot in out["outputs"]["plots"]:
        data = Path(plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
