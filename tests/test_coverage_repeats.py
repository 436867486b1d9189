"""The check that pausing coverage for repeated trainings loses nothing, and the pause itself."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest
from _coverage_repeats import (
    EVERYTHING,
    REPEATS,
    child_environment,
    children_in_context,
    children_unmeasured,
    coverage_paused,
    listed_repeats,
)
from _scripts import load_script
from coverage import CoverageData

if TYPE_CHECKING:
    from _typeshed import TraceFunction


check = load_script("coverage_repeats")


def _data(path: Path, root: str, arcs: dict[str, list[tuple[int, int]]]) -> Path:
    data = CoverageData(basename=str(path))
    data.add_arcs({f"{root}/refgrad/{name}": set(found) for name, found in arcs.items()})
    data.write()
    return path


def test_a_paused_run_passes_only_with_every_arc_of_the_full_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files are matched from refgrad/ on (two checkouts); a missing line or branch fails, named."""
    arcs = {"moons.py": [(-1, 10), (10, 11), (11, -1)], "cli.py": [(-1, 5), (5, 7)]}
    everything = _data(tmp_path / "everything.coverage", "/one/checkout", arcs)
    same = _data(tmp_path / "same.coverage", "/another/checkout", {**arcs, "extra.py": [(-1, 1)]})
    assert check.main(["check", str(everything), str(same)]) == 0
    # 5 arcs, and the 4 lines they touch.
    assert "measured all 9 lines and branches of 2 files" in capsys.readouterr().out
    fewer = _data(tmp_path / "fewer.coverage", "/another/checkout", {"moons.py": [(-1, 10), (10, 11)]})
    assert check.main(["check", str(everything), str(fewer)]) == 1
    out = capsys.readouterr().out
    assert "5 of 9 lines and branches are measured only by the repeats" in out
    assert "refgrad/moons.py: exit from line 11\n" in out
    assert "refgrad/cli.py: entry to line 5, line 5, branch 5->7, line 7\n" in out


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    """No data file: one line naming it, not a traceback."""
    with pytest.raises(SystemExit, match="no coverage data at"):
        check.main(["check", str(tmp_path / "nothing"), str(tmp_path / "nothing")])


def test_the_pause_sets_the_tracer_aside_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a coverage tracer is paused, and only while the block runs; EVERYTHING=1 pauses nothing."""
    tracer = _load_tracer()
    monkeypatch.delenv(EVERYTHING, raising=False)
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with coverage_paused():
            inside = sys.gettrace()
        after = sys.gettrace()
        monkeypatch.setenv(EVERYTHING, "1")
        with coverage_paused():
            measured = sys.gettrace()
    finally:
        sys.settrace(previous)
    assert (inside, after, measured) == (None, tracer, tracer)


def test_a_child_of_a_repeat_does_not_measure_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subprocess patch's variable is left out of a repeat's environment, unless EVERYTHING=1."""
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    monkeypatch.delenv(EVERYTHING, raising=False)
    assert "COVERAGE_PROCESS_CONFIG" not in child_environment()
    monkeypatch.setenv(EVERYTHING, "1")
    assert child_environment()["COVERAGE_PROCESS_CONFIG"] == "{}"


def _recording(path: Path, contexts: dict[str, dict[str, list[tuple[int, int]]]]) -> Path:
    data = CoverageData(basename=str(path))
    for context, arcs in contexts.items():
        data.set_context(context)
        data.add_arcs({f"/checkout/refgrad/{name}": set(found) for name, found in arcs.items()})
    data.write()
    return path


def test_the_chooser_pauses_the_slowest_tests_whose_lines_stay_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Slowest first; a test is paused only if every arc of its call and its children is measured by what stays."""
    a, b, c = "tests/test_x.py::test_a", "tests/test_x.py::test_b[1]", "tests/test_x.py::test_c"
    recording = _recording(
        tmp_path / "contexts.coverage",
        {
            f"{a}|run": {"x.py": [(1, 2), (2, 3)]},
            f"{a}|child": {"cli.py": [(5, 6)]},
            f"{b}|run": {"x.py": [(1, 2)], "cli.py": [(5, 6)]},
            f"{b}|setup": {"x.py": [(2, 3)]},
            f"{c}|run": {"x.py": [(1, 2), (7, 8)]},
            "": {"x.py": [(9, 10)]},
        },
    )
    seconds = {a: 30.0, b: 20.0, c: 10.0, "tests/test_x.py::test_quick": 0.5}
    folder = tmp_path / "seconds"
    folder.mkdir()
    (folder / "seconds-gw0.tsv").write_text(f"{a}\t30.0\n{b}\t20.0\n", encoding="utf-8")
    (folder / "seconds-gw1.tsv").write_text(f"{c}\t10.0\ntests/test_x.py::test_quick\t0.5\n", encoding="utf-8")
    assert check.call_seconds(folder) == seconds
    # a is paused: (1, 2) stays with b and c, (2, 3) with b's setup, cli.py's (5, 6) with b. Then b
    # must stay (cli.py's (5, 6) is no longer measured elsewhere), and c holds the only (7, 8).
    assert check.choose(check.by_context(recording), seconds) == [a]
    listed = tmp_path / "list.txt"
    assert check.main(["choose", str(recording), str(folder), str(listed)]) == 0
    assert listed_repeats(listed) == frozenset({a})
    assert f"{a}  # 30.0 s" in listed.read_text(encoding="utf-8")
    out = capsys.readouterr().out
    assert "1 of 4 tests run paused, 30 of 60 call seconds" in out
    # What keeps each test that stays measured: the lines (n:n) and branches only it measures, slowest first.
    assert f"  20.0 s  {b}: refgrad/cli.py:5:5, refgrad/cli.py:5:6, refgrad/cli.py:6:6\n" in out
    assert out.endswith(f"  10.0 s  {c}: refgrad/x.py:7:7, refgrad/x.py:7:8, refgrad/x.py:8:8\n")


def test_the_listed_repeats_are_tests_of_the_suite() -> None:
    """Each node id in tests/coverage_repeats.txt names a test function that exists (a stale line pauses nothing)."""
    listed = listed_repeats()
    assert listed, "the list is empty: the tests session would measure every repeat"
    root = REPEATS.parent.parent
    for nodeid in sorted(listed):
        path, _, name = nodeid.partition("::")
        function = name.split("[", 1)[0].split("@", 1)[0]
        source = (root / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(function)}\(", source, re.MULTILINE), nodeid


def _config(**settings: object) -> str:
    return base64.b64encode(json.dumps(settings).encode()).decode()


def test_a_recorded_childs_lines_carry_its_tests_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child configuration gets the context while the block runs, and is put back; an unreadable one is an error."""
    original = _config(context=None, branch=True)
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", original)
    with children_in_context("tests/test_x.py::test_a|child"):
        inside = json.loads(base64.b64decode(os.environ["COVERAGE_PROCESS_CONFIG"]))
    assert inside == {"context": "tests/test_x.py::test_a|child", "branch": True}
    assert os.environ["COVERAGE_PROCESS_CONFIG"] == original
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "not base64!")
    with pytest.raises(RuntimeError, match="cannot read coverage's child-process"), children_in_context("x|child"):
        pass
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", _config(branch=True))
    with pytest.raises(RuntimeError, match="has no context setting"), children_in_context("x|child"):
        pass


def test_a_paused_tests_children_do_not_measure_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    """While paused, the subprocess patch's variable is out of this process's environment; EVERYTHING=1 keeps it."""
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    monkeypatch.delenv(EVERYTHING, raising=False)
    with children_unmeasured():
        assert "COVERAGE_PROCESS_CONFIG" not in os.environ
    assert os.environ["COVERAGE_PROCESS_CONFIG"] == "{}"
    monkeypatch.setenv(EVERYTHING, "1")
    with children_unmeasured():
        assert os.environ["COVERAGE_PROCESS_CONFIG"] == "{}"


def _load_tracer() -> TraceFunction:
    """A stand-in for coverage's tracer: a trace function whose class comes from a coverage module."""

    class Tracer:
        def __call__(self, frame: FrameType, event: str, arg: object) -> None:
            return None

    Tracer.__module__ = "coverage.fake"
    return Tracer()
