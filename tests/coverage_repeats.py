"""Check that pausing coverage for the repeats (tests/_coverage_repeats.py) loses no line or branch.

    python tests/coverage_repeats.py EVERYTHING.coverage PAUSED.coverage

reads two coverage data files of refgrad/, one from a run that measured everything
(``REFGRAD_COVERAGE_OF_REPEATS=1``) and one from a run like ``nox -s tests``, and exits 1, naming
each line and branch, when the second lacks any the first has. Files are matched by their path
from ``refgrad/`` on, so the runs may come from different checkouts. ``nox -s coverage_repeats``
makes both runs and calls this.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from coverage import CoverageData

Arc = tuple[int, int]


def measured(path: Path) -> dict[str, set[Arc]]:
    """Per file of refgrad/ (from ``refgrad/`` on): the branch arcs the run took (lines as ``(n, n)`` arcs)."""
    if not path.is_file():
        raise SystemExit(f"coverage_repeats: no coverage data at {path}")
    data = CoverageData(basename=str(path))
    data.read()
    if not data.has_arcs():
        raise SystemExit(f"coverage_repeats: {path} has no branch data (run with branch = true)")
    found: dict[str, set[Arc]] = {}
    marker = f"{os.sep}refgrad{os.sep}"
    for filename in data.measured_files():
        if marker not in filename:
            continue
        key = filename[filename.rindex(marker) + 1 :]
        arcs = found.setdefault(key, set())
        arcs.update(data.arcs(filename) or ())
        arcs.update((line, line) for line in data.lines(filename) or ())
    return found


def missing(everything: dict[str, set[Arc]], paused: dict[str, set[Arc]]) -> dict[str, list[Arc]]:
    """What the paused run lacks, per file."""
    lost: dict[str, list[Arc]] = {}
    for key, arcs in sorted(everything.items()):
        gone = sorted(arcs - paused.get(key, set()))
        if gone:
            lost[key] = gone
    return lost


def _describe(arc: Arc) -> str:
    start, end = arc
    if start == end:
        return f"line {start}"
    if start < 0:
        return f"entry to line {end}"
    if end < 0:
        return f"exit from line {start}"
    return f"branch {start}->{end}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that the run with the repeats paused lost no coverage.")
    parser.add_argument("everything", type=Path, help="coverage data of a run measuring the repeats too")
    parser.add_argument("paused", type=Path, help="coverage data of a run with the repeats unmeasured")
    arguments = parser.parse_args(argv)
    everything = measured(arguments.everything)
    paused = measured(arguments.paused)
    lost = missing(everything, paused)
    total = sum(len(arcs) for arcs in everything.values())
    if lost:
        count = sum(len(arcs) for arcs in lost.values())
        print(f"coverage_repeats: {count} of {total} lines and branches are measured only by the repeats:")
        for key, arcs in lost.items():
            print(f"  {key}: {', '.join(_describe(arc) for arc in arcs)}")
        print("Measure those tests again (tests/_coverage_repeats.py), or cover these lines elsewhere.")
        return 1
    print(
        f"coverage_repeats: the run with the repeats paused measured all {total} lines and branches "
        f"of {len(everything)} files that the full run measured"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
