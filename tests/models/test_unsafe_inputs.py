"""Model arguments that would write outside --output_path, and pickled checkpoints torch refuses (issue 16)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from matrixeval.models import model_name, parse_model_args
from tests import faults

TEXTS = '{"text": "the cat sat on the mat ."}\n{"text": "a dog ran across the green field ."}\n'


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("pretrained, name", [("..", "__"), (".", "_"), ("...", "___"), ("../x", "..__x")])
def test_a_model_name_is_one_component_that_stays_inside(pretrained, name, tmp_path):
    got = model_name(parse_model_args(f"pretrained={pretrained}"))
    assert got == name
    assert (tmp_path / got).resolve().parent == tmp_path.resolve()


def test_pretrained_dotdot_writes_results_and_store_inside_output_path(gpt2_path, tmp_path):
    """`pretrained=..` from a folder inside the model: <output_path>/.. used to receive results and the store."""
    model = tmp_path / "model"
    shutil.copytree(gpt2_path, model)
    cwd = model / "work"
    cwd.mkdir()
    (cwd / "t.jsonl").write_text(TEXTS)
    before = _files(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", "pretrained=..", "--tasks",
                           "t.jsonl", "--metrics", "matrix_entropy", "--output_path", "out"],
                          cwd=cwd, env=faults.env() | {"PYTHONPATH": os.pathsep.join(sys.path)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    new = _files(tmp_path) - before
    assert any(p.name.startswith("results_") for p in new) and any("store" in p.parts for p in new)
    outside = [p for p in new if not p.is_relative_to(cwd / "out")]
    assert outside == [], outside


class _Payload:
    """What a malicious pickle holds: unpickling it would create `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_bin_that_weights_only_refuses_is_one_line(gpt2_path, tmp_path):
    from safetensors.torch import load_file

    model = tmp_path / "pickled"
    shutil.copytree(gpt2_path, model, ignore=shutil.ignore_patterns("*.safetensors"))
    state = load_file(gpt2_path / "model.safetensors")
    marker = tmp_path / "payload-ran"
    state["extra"] = _Payload(marker)
    torch.save(state, model / "pytorch_model.bin")
    (tmp_path / "t.jsonl").write_text(TEXTS)
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", f"pretrained={model}",
                           "--tasks", str(tmp_path / "t.jsonl"), "--output_path", str(tmp_path / "out")],
                          env=faults.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("matrixeval: error: ") and str(model / "pytorch_model.bin") in last
    assert "weights_only" in last and "safetensors" in last
    assert "it holds getattr" in last  # the global torch refused (Path.touch is pickled via getattr)
    assert not marker.exists()  # the payload never ran
