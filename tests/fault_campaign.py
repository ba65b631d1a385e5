"""The fault campaign over every experiment: run it once uninterrupted, then SIGKILL it (with all its processes)
at a kill point — once a given number of samples are durable in its store — re-run the same command, and check
that the re-run's results equal the uninterrupted run's (timestamps and resume bookkeeping aside).

Used by tests/test_fault_campaign.py (one kill point per experiment, inside `make test`) and by
scripts/fault_runs.py --experiments (several kill points each, the figures the README quotes).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import faults
from tests.tiny_llava import make_images, make_tiny_llava
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm

# Fields that differ between an interrupted-then-resumed run and an uninterrupted one by design.
BOOKKEEPING = {"n_resumed", "n_torn_store_lines", "timestamp", "date", "results_path", "outputs", "duration_s",
               "total_seconds", "time", "elapsed_s", "resumed", "n_reused", "reused", "resumed_at_step"}


@dataclass
class Case:
    """One experiment as a user runs it: its CLI arguments (after `python -m matrixeval`), the glob of its
    results JSON under the output folder, and the kill points (durable store lines) the campaign tries."""

    name: str
    argv: list[str]
    results_glob: str
    kill_points: list[int] = field(default_factory=lambda: [2])
    # Kill once a file matching this glob exists under the output folder (e.g. a training state), instead of
    # counting store records; the kill points then count such files.
    kill_on: str | None = None


def _sentences(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            sents = [rng.choice(TINY_TEXTS).rstrip(" .?") for _ in range(3 + i % 3)]
            f.write(json.dumps({"text": " ".join(s[0].upper() + s[1:] + "." for s in sents)}) + "\n")
    return path


def _openbookqa(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            texts = [rng.choice(TINY_TEXTS) for _ in range(4)]
            f.write(json.dumps({"id": f"q{i}", "question_stem": rng.choice(TINY_TEXTS), "choice_texts": texts,
                                "choices": {"text": texts, "label": list("ABCD")}, "answer_key": "ABCD"[i % 4]})
                    + "\n")
    return path


def cases(root: Path) -> list[Case]:
    """Build the inputs (tiny models, data files) under `root` and return every experiment's case."""
    root.mkdir(parents=True, exist_ok=True)
    gpt2 = make_tiny_causal_lm(root, "gpt2")
    sents = _sentences(root / "sents.jsonl", 10)
    ckpts = root / "run"
    for step, seed in ((10, 1), (20, 2)):
        target = ckpts / f"checkpoint-{step}"
        if not target.exists():
            import shutil

            shutil.copytree(make_tiny_causal_lm(root / f"seed{seed}", "gpt2", seed=seed), target)
    obqa = _openbookqa(root / "obqa.jsonl", 8)
    llava = make_tiny_llava(root)
    images = root / "images"
    names = [f"img{i}.png" for i in range(6)]
    make_images(images, names)
    pics = root / "pics.jsonl"
    pics.write_text("".join(json.dumps({"image": n, "instruction": TINY_TEXTS[i], "response": TINY_TEXTS[i + 1]}) + "\n"
                            for i, n in enumerate(names)))
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps({"short": "Read this.", "long": "Read the following text with care and then think."}))
    model = ["--model_args", f"pretrained={gpt2}", "--batch_size", "2", "--device", "cpu"]
    common = [*model, "--tasks", f"sents={sents}"]
    return [
        Case("run", ["run", *common, "--metrics", "matrix_entropy,nuclear_norm,loss"], "*/results_*.json", [2, 8]),
        Case("sentence-ops", ["experiment", "sentence-ops", *common, "--ops", "base,shuffle,reverse_order"],
             "*/sentence-ops_*.json", [2, 20]),
        Case("prompt", ["experiment", "prompt", *common, "--prompts", str(prompts)], "*/prompt_*.json", [2, 20]),
        Case("length", ["experiment", "length", *common, "--lengths", "4,8,12", "--min_tokens", "4"],
             "*/length_*.json", [2, 12]),
        Case("sampling", ["experiment", "sampling", *common, "--sizes", "4,8", "--n_seeds", "2"],
             "*/sampling_*.json", [2, 8]),
        Case("benchmark", ["experiment", "benchmark", *model, "--tasks", f"openbookqa={obqa}"],
             "*/benchmark_*.json", [2, 24]),
        Case("checkpoints", ["experiment", "checkpoints", *model[2:], "--tasks", f"sents={sents}", "--checkpoints",
                             str(ckpts / "checkpoint-*"), "--include_init"], "*/checkpoints_*.json", [2, 20]),
        Case("multimodal", ["experiment", "multimodal", "--model_args", f"pretrained={llava},dtype=float32",
                            "--device", "cpu", "--tasks", f"pics={pics}", "--image_root", str(images),
                            "--rotate", "90"], "*/multimodal_*.json", [2, 8]),
        Case("responses", ["experiment", "responses", *common, "--max_new_tokens", "4", "--sample", "--seed", "3",
                           "--metrics", "matrix_entropy,loss"], "*/responses_*.json", [2, 6]),
        Case("adapter --train", ["experiment", "adapter", *common, "--train", "--epochs", "3", "--lora_r", "2"],
             "*/adapter*.json", [1], kill_on="**/lora-*.state.pt"),
        Case("augment", ["experiment", "augment", *common, "--n_views", "2", "--layers", "0,-1"],
             "*/augment_*.json", [2, 6]),
    ]


def run(case: Case, out: Path, timeout: float = 600) -> tuple[dict, str]:
    """The case to its end in a subprocess: its newest results JSON and what it printed on stderr."""
    proc = subprocess.run([sys.executable, "-m", "matrixeval", *case.argv, "--output_path", str(out)],
                          env=faults.env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{case.name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    newest = sorted(out.glob(case.results_glob), key=lambda p: p.stat().st_mtime_ns)[-1]
    return json.loads(newest.read_text()), proc.stderr


def crash(case: Case, out: Path, after_lines: int, delay: float = 0.3, timeout: float = 300) -> int:
    """Start the case and SIGKILL it with all its processes once `after_lines` records are durable in its store;
    the number of lines stored at the kill. Raises when the run ends before the kill point."""
    proc = subprocess.Popen([sys.executable, "-m", "matrixeval", *case.argv, "--output_path", str(out)],
                            env=faults.env(delay), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    progress = (lambda: len(list(out.glob(case.kill_on)))) if case.kill_on else (lambda: faults.stored_lines(out))
    while progress() < after_lines:
        if proc.poll() is not None:
            raise RuntimeError(f"{case.name} ended before kill point {after_lines} "
                               f"({faults.stored_lines(out)} lines stored): {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            faults.kill_tree(proc.pid)
            raise TimeoutError(f"{case.name}: kill point {after_lines} not reached in {timeout} s")
        time.sleep(0.02)
    faults.kill_tree(proc.pid)
    proc.wait()
    return progress()


def comparable(value):
    """The results without what differs by design between a resumed and an uninterrupted run."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in BOOKKEEPING}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def n_resumed(stderr: str) -> int:
    """Samples (or training epochs) a run said on screen it took from its store: "... resumed N of M from the
    store ..." per task, "LoRA training: resuming at epoch E" for the E - 1 epochs done."""
    samples = sum(int(m) for m in re.findall(r"resumed (\d+) of \d+", stderr))
    return samples + sum(int(m) - 1 for m in re.findall(r"resuming at epoch (\d+)", stderr))


def numbers(result: dict) -> dict:
    """What the campaign compares: the results section and the table."""
    return comparable({"results": result.get("results"), "table": result.get("table")})
