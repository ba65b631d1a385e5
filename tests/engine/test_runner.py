"""The shared loop's output on a failure: the progress bar never swallows the error line."""

import os
import subprocess
import sys

import pytest

from tests import faults
from tests.tiny_models import make_tiny_causal_lm


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 8 KiB filesystem (tmpfs; needs root and mount rights, skipped without them)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_while_storing_prints_its_error_on_a_line_of_its_own(tiny_root, tiny_corpus, tmp_path, tiny_disk):
    """issue 16: the disk-full message during a store write was printed on the progress bar's line; now the bar
    ends its line first."""
    model = make_tiny_causal_lm(tiny_root, "gpt2")
    env = {k: v for k, v in faults.env().items() if k != "TQDM_DISABLE"}  # the bar on, as on a terminal
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "run", "--model_args", f"pretrained={model}",
                           "--tasks", str(tiny_corpus), "--batch_size", "2", "--metrics", "matrix_entropy",
                           "--output_path", str(tmp_path / "out"), "--store", str(tiny_disk / "store")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "sample/s" in proc.stderr or "tok_s" in proc.stderr or "%|" in proc.stderr, "the bar was shown"
    [line] = [line for line in proc.stderr.split("\n") if "matrixeval: error:" in line]
    assert line.startswith("matrixeval: error: ") and "no space left on the device" in line, repr(line)
    assert os.path.isdir(tiny_disk / "store")
