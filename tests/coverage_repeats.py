"""Choose the tests that run with coverage paused, and check that pausing them loses no line or branch.

    python tests/coverage_repeats.py check EVERYTHING.coverage PAUSED.coverage

reads two coverage data files of refgrad/, one from a run that measured everything
(``REFGRAD_COVERAGE_OF_REPEATS=1``) and one from a run like ``nox -s tests``, and exits 1, naming
each line and branch, when the second lacks any the first has. Files are matched by their path
from ``refgrad/`` on, so the runs may come from different checkouts.

    python tests/coverage_repeats.py choose CONTEXTS.coverage SECONDS_FOLDER tests/coverage_repeats.txt

reads a recording of the suite with a coverage context per test and phase (``--cov-context=test``,
and ``REFGRAD_COVERAGE_RECORD=SECONDS_FOLDER`` for each test's call seconds and its child
processes' context) and writes the list of tests whose call phase the tests session runs paused:
slowest first, a test of at least a second is listed when every line and branch its call phase
and its child processes measure is still measured by a context that stays (another test's call,
any test's setup or teardown, code outside a test). ``nox -s coverage_repeats`` makes the runs and
calls both (``-- write`` to choose again).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from pathlib import Path

from coverage import CoverageData
from typeguard_repeats import repeats

Arc = tuple[int, int]
# How many of the slowest tests that stay measured the chooser names, and how many of their arcs it shows.
SHOW_KEPT = 12
SHOW_ARCS = 4
# What a test's call phase measures, in the recording: its own lines, and its child processes'.
PAUSED_PHASES = ("run", "child")
HEADER = """\
# Tests whose call phase the tests session runs with coverage paused (tests/_coverage_repeats.py): every
# line and branch each of them measures there, child processes included, is measured by what stays.
# Written by `python tests/coverage_repeats.py choose` from a recording with a context per test;
# `python -m nox -s coverage_repeats` checks that the run with them paused measures everything.
# One pytest node id per line, with its call seconds under coverage.
"""


def _read(path: Path) -> CoverageData:
    if not path.is_file():
        raise SystemExit(f"coverage_repeats: no coverage data at {path}")
    data = CoverageData(basename=str(path))
    data.read()
    if not data.has_arcs():
        raise SystemExit(f"coverage_repeats: {path} has no branch data (run with branch = true)")
    return data


def _refgrad_files(data: CoverageData) -> dict[str, str]:
    """The measured files of refgrad/: key (the path from ``refgrad/`` on) -> file name in the data."""
    marker = f"{os.sep}refgrad{os.sep}"
    return {name[name.rindex(marker) + 1 :]: name for name in data.measured_files() if marker in name}


def _arcs(data: CoverageData, files: dict[str, str]) -> dict[str, set[Arc]]:
    found: dict[str, set[Arc]] = {}
    for key, filename in files.items():
        arcs = found.setdefault(key, set())
        arcs.update(data.arcs(filename) or ())
        arcs.update((line, line) for line in data.lines(filename) or ())
    return found


def measured(path: Path) -> dict[str, set[Arc]]:
    """Per file of refgrad/ (from ``refgrad/`` on): the branch arcs the run took (lines as ``(n, n)`` arcs)."""
    data = _read(path)
    return _arcs(data, _refgrad_files(data))


def by_context(path: Path) -> dict[str, frozenset[str]]:
    """Per coverage context of a recording: what it measured of refgrad/, each as ``file:from:to``."""
    data = _read(path)
    files = _refgrad_files(data)
    found: dict[str, frozenset[str]] = {}
    for context in sorted(data.measured_contexts()):
        data.set_query_contexts([f"^{re.escape(context)}$"])
        arcs = _arcs(data, files)
        found[context] = frozenset(f"{key}:{start}:{end}" for key, pairs in arcs.items() for start, end in pairs)
    return found


def call_seconds(folder: Path) -> dict[str, float]:
    """Each test's call seconds, from the recording's ``seconds-*.tsv`` files (one per pytest-xdist worker)."""
    found: dict[str, float] = {}
    for path in sorted(folder.glob("seconds-*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            nodeid, seconds = line.rsplit("\t", 1)
            found[nodeid] = float(seconds)
    if not found:
        raise SystemExit(f"coverage_repeats: no seconds-*.tsv in {folder} (record with REFGRAD_COVERAGE_RECORD)")
    return found


Candidates = dict[str, tuple[float, frozenset[str]]]


def _candidates(contexts: dict[str, frozenset[str]], seconds: dict[str, float]) -> Candidates:
    """Each test's call phase and child processes as one candidate, weighed by its call seconds.

    Every other context (setups, teardowns, code outside a test) is one that stays, weighed zero.
    """
    candidates: Candidates = {}
    for context, arcs in contexts.items():
        nodeid, _, phase = context.rpartition("|")
        if phase in PAUSED_PHASES and nodeid in seconds:
            _, before = candidates.get(nodeid, (0.0, frozenset()))
            candidates[nodeid] = (seconds[nodeid], before | arcs)
        else:
            candidates[f"{context}(stays)"] = (0.0, arcs)
    return candidates


def choose(contexts: dict[str, frozenset[str]], seconds: dict[str, float]) -> list[str]:
    """The tests to pause, slowest first, such that every context's lines and branches are still measured."""
    return repeats(_candidates(contexts, seconds))


def only_measured_by(
    contexts: dict[str, frozenset[str]], seconds: dict[str, float], chosen: list[str]
) -> dict[str, frozenset[str]]:
    """For each test that stays measured: the lines and branches no other measured context has."""
    candidates = _candidates(contexts, seconds)
    kept = {name: arcs for name, (_, arcs) in candidates.items() if name not in set(chosen)}
    holders: Counter[str] = Counter(arc for arcs in kept.values() for arc in arcs)
    return {name: frozenset(arc for arc in arcs if holders[arc] == 1) for name, arcs in kept.items() if name in seconds}


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


def _check(everything_path: Path, paused_path: Path) -> int:
    everything = measured(everything_path)
    paused = measured(paused_path)
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


def _choose(recording: Path, folder: Path, output: Path) -> int:
    seconds = call_seconds(folder)
    contexts = by_context(recording)
    chosen = choose(contexts, seconds)
    lines = [f"{nodeid}  # {seconds[nodeid]:.1f} s" for nodeid in chosen]
    output.write_text(HEADER + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    paused = sum(seconds[nodeid] for nodeid in chosen)
    print(
        f"coverage_repeats: {len(chosen)} of {len(seconds)} tests run paused, {paused:.0f} of "
        f"{sum(seconds.values()):.0f} call seconds under coverage; written to {output}"
    )
    # What keeps the slowest measured tests measured: covering it elsewhere would let them pause.
    sole = only_measured_by(contexts, seconds, chosen)
    slowest = sorted(sole, key=lambda nodeid: -seconds[nodeid])[:SHOW_KEPT]
    if slowest:
        print("the slowest tests that stay measured, and the lines and branches only they measure:")
    for nodeid in slowest:
        arcs = sorted(sole[nodeid])
        shown = ", ".join(arcs[:SHOW_ARCS]) + (f", ... ({len(arcs)} in all)" if len(arcs) > SHOW_ARCS else "")
        print(f"  {seconds[nodeid]:6.1f} s  {nodeid}: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Choose the coverage repeats, or check that pausing lost nothing.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check that the run with the repeats paused lost nothing")
    check.add_argument("everything", type=Path, help="coverage data of a run measuring the repeats too")
    check.add_argument("paused", type=Path, help="coverage data of a run with the repeats unmeasured")
    chooser = commands.add_parser("choose", help="write the list of tests to run paused, from a recording")
    chooser.add_argument("recording", type=Path, help="coverage data recorded with --cov-context=test")
    chooser.add_argument("seconds", type=Path, help="the folder REFGRAD_COVERAGE_RECORD named in that run")
    chooser.add_argument("output", type=Path, help="the list to write (tests/coverage_repeats.txt)")
    arguments = parser.parse_args(argv)
    if arguments.command == "check":
        return _check(arguments.everything, arguments.paused)
    return _choose(arguments.recording, arguments.seconds, arguments.output)


if __name__ == "__main__":
    sys.exit(main())
