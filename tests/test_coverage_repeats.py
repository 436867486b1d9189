"""The check that pausing coverage for repeated trainings loses nothing, and the pause itself."""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest
from _coverage_repeats import EVERYTHING, child_environment, coverage_paused
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
    assert check.main([str(everything), str(same)]) == 0
    # 5 arcs, and the 4 lines they touch.
    assert "measured all 9 lines and branches of 2 files" in capsys.readouterr().out
    fewer = _data(tmp_path / "fewer.coverage", "/another/checkout", {"moons.py": [(-1, 10), (10, 11)]})
    assert check.main([str(everything), str(fewer)]) == 1
    out = capsys.readouterr().out
    assert "5 of 9 lines and branches are measured only by the repeats" in out
    assert "refgrad/moons.py: exit from line 11\n" in out
    assert "refgrad/cli.py: entry to line 5, line 5, branch 5->7, line 7\n" in out


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    """No data file: one line naming it, not a traceback."""
    with pytest.raises(SystemExit, match="no coverage data at"):
        check.main([str(tmp_path / "nothing"), str(tmp_path / "nothing")])


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


def _load_tracer() -> TraceFunction:
    """A stand-in for coverage's tracer: a trace function whose class comes from a coverage module."""

    class Tracer:
        def __call__(self, frame: FrameType, event: str, arg: object) -> None:
            return None

    Tracer.__module__ = "coverage.fake"
    return Tracer()
