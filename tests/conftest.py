import json
import os
import random
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and idle threads spin when the CPU is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A JSONL task of 20 texts of varied length built from the tiny tokenizer's words."""
    from tests.tiny_models import TINY_TEXTS

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl"
    with open(path, "w") as f:
        for i in range(20):
            text = " ".join(rng.choice(TINY_TEXTS) for _ in range(1 + i % 5))
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    return path


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data file {relative} is not available")
    return path


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 8 KiB filesystem (tmpfs; needs root and mount rights, skipped without them)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)
