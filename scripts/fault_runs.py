"""Fault runs on the real packaged all-MiniLM-L6-v2: kill, tear, resume, and compare with an uninterrupted run.

Run: .venv/bin/python scripts/fault_runs.py [--docs 48] [--workdir DIR]
Each scenario starts `python -m matrixeval run` (or torchrun with 2 gloo ranks) in a subprocess, SIGKILLs
its whole process group once some samples are durable, optionally tears the last stored line, resumes,
and checks that the final metric values are bit-identical to an uninterrupted run. Prints one line each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import faults  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="matrixeval-faults-"))
    args = ["--limit", str(a.docs), "--batch_size", "4", "--layers", "0,-1",
            "--metrics", "matrix_entropy,effective_rank,nuclear_norm,nuclear_norm_exact,diff_erank"]
    baseline = faults.run(args, root / "baseline")
    task = next(iter(baseline["results"]))
    print(f"baseline: {a.docs} pydoc_topics docs on all-MiniLM-L6-v2, batch 4, layers 0 and 6; "
          f"matrix_entropy {baseline['results'][task]['matrix_entropy']:.6f}")
    failures = 0
    scenarios = [("SIGKILL 1 rank, resume on 1", 1, 1, False), ("SIGKILL 2 ranks, resume on 1", 2, 1, False),
                 ("SIGKILL 1 rank, resume on 2", 1, 2, False), ("SIGKILL + torn last line, resume", 1, 1, True)]
    for i, (name, before, after, tear) in enumerate(scenarios):
        out = root / f"scenario{i}"
        stored = faults.crash(args, out, before, after_lines=8)
        if tear:
            faults.tear_last_line(out)
        resumed = faults.run(args, out, after)
        r = resumed["results"][task]
        same = faults.numbers(resumed) == faults.numbers(baseline)
        failures += not same
        print(f"{name:<36} stored at kill {stored:>3}  resumed {r['n_resumed']:>3}  torn lines {r['n_torn_store_lines']}"
              f"  world {resumed['config']['world_size']}  identical to uninterrupted: {'yes' if same else 'NO'}")
    other = faults.run([*args, "--max_length", "64"], root / "scenario0")
    stale = other["results"][task]["n_resumed"]
    failures += stale != 0
    print(f"{'another max_length on the same store':<36} resumed {stale:>3} (must be 0: no stale entries reused)")
    print(f"work directory: {root}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
