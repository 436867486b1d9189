"""Which fast tests the typeguard pass may leave out: those whose every type flow other tests check too.

The typeguard pass (``nox -s tests_typeguard``) exists to check refgrad's annotations against the
values that really flow: each argument and return value of each refgrad function, by shape. A
test that only repeats flows other tests already show (100 training steps of the calls one step
makes, 300 hypothesis examples of the shapes ten examples have) adds time, not checks. This
script reads a recording of the whole fast suite under typeguard (``--typeguard-flows``: per test,
its seconds and its distinct flows) and writes the list of tests the pass leaves out:

    python tests/typeguard_repeats.py FLOWS.json tests/typeguard_repeats.txt

Greedy, slowest first: a test of at least ``MIN_SECONDS`` is left out when every one of its flows
is still seen by a test that stays. So the tests that stay see every flow the whole suite sees:
nothing the pass checked is unchecked. ``--check`` instead reads an existing list and fails
(exit 1, naming the flows) if the tests that stay no longer see every flow; ``nox -s
typeguard_flows`` records the suite and runs that check. Tests not in the recording (new ones)
are never left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

# Below this a test costs less than the care of listing it.
MIN_SECONDS = 1.0
HEADER = """\
# Fast tests the typeguard pass leaves out (nox -s tests_typeguard): every type flow each of them
# checks (function, argument or return value, the value's shape) is checked by a test that stays.
# Written by tests/typeguard_repeats.py from a recording of the whole fast suite under typeguard;
# `python -m nox -s typeguard_flows` records again and checks that this still holds.
# They all run in `nox -s tests`. One pytest node id per line, with its seconds under typeguard.
"""


def load_flows(path: Path) -> dict[str, tuple[float, frozenset[str]]]:
    """The recording: node id -> (seconds, flows)."""
    raw: dict[str, tuple[float, list[str]]] = json.loads(path.read_text(encoding="utf-8"))
    return {nodeid: (float(seconds), frozenset(flows)) for nodeid, (seconds, flows) in raw.items()}


def all_flows(records: dict[str, tuple[float, frozenset[str]]], leaving_out: set[str] | None = None) -> set[str]:
    """Every flow some test of the recording checks, but for the tests in ``leaving_out``."""
    found: set[str] = set()
    for nodeid, (_, flows) in records.items():
        if leaving_out is None or nodeid not in leaving_out:
            found |= flows
    return found


def repeats(records: dict[str, tuple[float, frozenset[str]]]) -> list[str]:
    """The tests to leave out, slowest first, such that the rest see every flow."""
    seen_by: Counter[str] = Counter()
    for _, flows in records.values():
        seen_by.update(flows)
    left_out: list[str] = []
    for nodeid, (seconds, flows) in sorted(records.items(), key=lambda item: -item[1][0]):
        if seconds < MIN_SECONDS:
            break
        if all(seen_by[flow] >= 2 for flow in flows):
            seen_by.subtract(flows)
            left_out.append(nodeid)
    return left_out


def unseen(records: dict[str, tuple[float, frozenset[str]]], left_out: set[str]) -> set[str]:
    """Flows the whole recording has that no test outside ``left_out`` has."""
    return all_flows(records) - all_flows(records, left_out)


def read_list(path: Path) -> list[str]:
    """The node ids of a written list (comments and the seconds column dropped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def main(argv: list[str] | None = None) -> int:
    """Write the list, or with --check verify an existing one against a recording."""
    parser = argparse.ArgumentParser(description="Which fast tests the typeguard pass may leave out.")
    parser.add_argument("flows", type=Path, help="the --typeguard-flows recording of the whole fast suite")
    parser.add_argument("list", type=Path, help="the list of tests the pass leaves out")
    parser.add_argument("--check", action="store_true", help="check the existing list instead of writing it")
    args = parser.parse_args(argv)
    records = load_flows(args.flows)
    total = sum(seconds for seconds, _ in records.values())
    flows = len(all_flows(records))
    if args.check:
        listed = read_list(args.list)
        missing = unseen(records, set(listed))
        kept = total - sum(records[nodeid][0] for nodeid in listed if nodeid in records)
        print(f"{len(records)} tests, {flows} distinct flows, {total:.0f} s; the pass keeps {kept:.0f} s")
        if missing:
            print(f"{len(missing)} flow(s) only the left-out tests check:", *sorted(missing), sep="\n  ")
            print("help: regenerate the list: python tests/typeguard_repeats.py FLOWS.json", args.list)
            return 1
        print(f"every flow is checked by the {len(records) - len(listed)} tests that stay")
        return 0
    left_out = repeats(records)
    assert not unseen(records, set(left_out))
    saved = sum(records[nodeid][0] for nodeid in left_out)
    lines = [f"{nodeid}  # {records[nodeid][0]:.1f} s" for nodeid in left_out]
    args.list.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(records)} tests, {flows} distinct flows, {total:.0f} s under typeguard")
    print(f"left out {len(left_out)} tests ({saved:.0f} s); the rest see all {flows} flows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
