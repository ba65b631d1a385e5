"""Fault runs on the real packaged all-MiniLM-L6-v2: kill, tear, resume, and compare with an uninterrupted run.

Run: .venv/bin/python scripts/fault_runs.py [--docs 48] [--workdir DIR] [--experiments [NAME ...]]
With --experiments: the campaign over every experiment (tests/fault_campaign.py): each is run once
uninterrupted, then SIGKILLed at each of its kill points (early, middle, and one record before its end), re-run,
and compared with the uninterrupted run; one line per kill point and a total.
Otherwise each scenario starts `python -m matrixeval run` (or torchrun with 2 gloo ranks) in a subprocess, SIGKILLs
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
    parser.add_argument("--experiments", nargs="*", default=None, metavar="NAME",
                        help="run the campaign over every experiment (or the ones named)")
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="matrixeval-faults-"))
    if a.experiments is not None:
        return campaign(root, a.experiments)
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


def campaign(root: Path, names: list[str]) -> int:
    """Every experiment (or `names`): kill points early, middle and one record before the end; identical resumes."""
    from tests import fault_campaign as fc

    cases = [c for c in fc.cases(root / "inputs") if not names or c.name in names]
    total = identical = 0
    for case in cases:
        baseline, _ = fc.run(case, root / case.name / "baseline")
        lines = faults.stored_lines(root / case.name / "baseline")
        # a kill_on case counts training states, not store records: its own points only
        points = case.kill_points if case.kill_on else sorted({*case.kill_points, lines - 1})
        for point in points:
            out = root / case.name / f"kill{point}"
            try:
                at = fc.crash(case, out, point)
                resumed, said = fc.run(case, out)
            except (RuntimeError, TimeoutError) as err:
                total += 1
                print(f"{case.name:<13} kill point {point:>3}/{lines}: FAILED {err}")
                continue
            same = fc.numbers(resumed) == fc.numbers(baseline)
            total += 1
            identical += same
            print(f"{case.name:<13} kill point {point:>3}/{lines}: stored {at:>3} at the kill, re-run resumed "
                  f"{fc.n_resumed(said):>3}, identical to uninterrupted: {'yes' if same else 'NO'}")
    print(f"{len(cases)} experiments, {total} kill points, {identical} identical resumes; work directory: {root}")
    return 0 if identical == total else 1


if __name__ == "__main__":
    sys.exit(main())
