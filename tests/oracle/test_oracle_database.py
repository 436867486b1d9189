"""The example database: counterexamples stored atomically, replayed first, checked alone with --replay or --program."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import settings

from refgrad.ops import N, Params, primal, registry
from refgrad.oracle import Const, Program, Ref, RefgradEngine, Step, command
from refgrad.oracle.command import run_verify
from refgrad.oracle.database import ENTRY_FORMAT, ExampleDatabase, read_program_file, read_program_file_and_order
from refgrad.oracle.engines import MICROGRAD_ATTRIBUTES, Attributes

_SQUARE = Program((0.5,), (Step("mul", (Ref(0), Ref(0))),))
_TANH = Program((0.5,), (Step("tanh", (Ref(0),)),))
_CHAIN = Program((0.25, -2.0), (Step("add", (Ref(0), Ref(1))), Step("mul", (Ref(2), Const(3.0)))))


def _verify(engine: str, database: Path | None, **options: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    examples = options.pop("examples", 30)
    assert isinstance(examples, int)
    status = run_verify(engine, examples=examples, seed=0, ops=None, out=out, err=err, database=database, **options)  # type: ignore[arg-type]  # the options are run_verify's keywords
    return status, out.getvalue(), err.getvalue()


def test_entries_round_trip_per_engine(tmp_path: Path) -> None:
    """What is saved for an engine comes back for it (smallest first), and only for it."""
    database = ExampleDatabase(tmp_path)
    database.save("mod:Value", _CHAIN, "chain failed")
    database.save("mod:Value", _SQUARE, "square failed")
    database.save("other:Value", _TANH, "tanh failed")
    stored, corrupt = database.load("mod:Value")
    assert corrupt == []
    assert [(example.program, example.failure) for example in stored] == [
        (_SQUARE, "square failed"),
        (_CHAIN, "chain failed"),
    ]
    assert [example.program for example in database.load("other:Value")[0]] == [_TANH]
    assert database.load("nobody") == ([], [])


def test_saving_a_program_again_replaces_its_entry(tmp_path: Path) -> None:
    """One entry per program: a second save updates the failure description, adds nothing."""
    database = ExampleDatabase(tmp_path)
    first = database.save("e", _SQUARE, "old")
    second = database.save("e", _SQUARE, "new")
    assert first == second
    stored, _ = database.load("e")
    assert [example.failure for example in stored] == ["new"]


def test_engine_names_that_differ_only_in_punctuation_get_different_directories(tmp_path: Path) -> None:
    """Directory names are made safe, plus a hash of the exact name, so that they never collide."""
    database = ExampleDatabase(tmp_path)
    assert database.directory("a:b") != database.directory("a_b")
    assert database.directory("../../etc:passwd").parent == tmp_path
    assert database.directory("").parent == tmp_path


def test_a_write_interrupted_at_the_last_moment_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed before the rename: the old entry is intact, no temporary file is left, and nothing corrupt appears."""
    database = ExampleDatabase(tmp_path)
    path = database.save("e", _SQUARE, "first")
    before = path.read_bytes()

    def killed(source: object, target: object) -> None:
        raise KeyboardInterrupt  # as if the run were stopped between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        database.save("e", _SQUARE, "second")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    stored, corrupt = database.load("e")
    assert [example.failure for example in stored] == ["first"]
    assert corrupt == []


def test_temporary_files_left_by_a_killed_run_are_ignored(tmp_path: Path) -> None:
    """A half-written temporary file (as a SIGKILL would leave) is not read as an entry."""
    database = ExampleDatabase(tmp_path)
    path = database.save("e", _SQUARE, "found")
    (path.parent / ".tmpabc.tmp").write_text('{"format": "refgr', encoding="utf-8")
    stored, corrupt = database.load("e")
    assert [example.program for example in stored] == [_SQUARE]
    assert corrupt == []


def _entry(stored: Program, engine: str = "e", **changes: object) -> str:
    entry: dict[str, object] = {"format": ENTRY_FORMAT, "engine": engine, "failure": "x", "program": stored.to_dict()}
    entry.update(changes)
    return json.dumps(entry)


_CORRUPT = {
    "truncated": ('{"format": "refgrad-counterexample-1", "eng', "do not match"),
    "empty": ("", "not valid program JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
    "a bare program": (_SQUARE.to_json(), "not a counterexample entry"),
    "another format": (_entry(_SQUARE, format="pickle"), "not a counterexample entry"),
    "another engine": (_entry(_SQUARE, engine="f"), "stored for engine 'f'"),
    "a bad program": (_entry(_SQUARE, program={"inputs": [], "steps": []}), "at least one input"),
    "a bad failure": (_entry(_SQUARE, failure=3), "'failure' must be a string"),
    "deep nesting": ("[" * 50_000 + "]" * 50_000, "nest deeper"),
    "NaN": (_entry(_SQUARE).replace("0.5", "NaN"), "NaN is not a finite number"),
}


@pytest.mark.parametrize(("content", "reason"), list(_CORRUPT.values()), ids=list(_CORRUPT))
def test_a_corrupt_entry_is_reported_and_skipped(tmp_path: Path, content: str | bytes, reason: str) -> None:
    """A bad file among good ones: reported with its path and why, the good entries still load."""
    database = ExampleDatabase(tmp_path)
    good = database.save("e", _SQUARE, "found")
    bad = good.parent / "bad.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content, encoding="utf-8")
    stored, corrupt = database.load("e")
    assert [example.program for example in stored] == [_SQUARE]
    assert [entry.path for entry in corrupt] == [bad]
    assert reason in corrupt[0].reason


def test_a_directory_where_an_entry_should_be_is_reported(tmp_path: Path) -> None:
    """An unreadable entry (here a directory named like one) is reported, not raised."""
    database = ExampleDatabase(tmp_path)
    good = database.save("e", _SQUARE, "found")
    (good.parent / "odd.json").mkdir()
    stored, corrupt = database.load("e")
    assert len(stored) == 1
    assert len(corrupt) == 1
    assert "cannot read" in corrupt[0].reason


def test_program_files_are_bare_programs_or_entries(tmp_path: Path) -> None:
    """read_program_file takes a program's JSON or a stored entry; errors name the file."""
    bare = tmp_path / "bare.json"
    bare.write_text(_CHAIN.to_json(), encoding="utf-8")
    assert read_program_file(bare) == _CHAIN
    entry = ExampleDatabase(tmp_path / "db").save("e", _TANH, "found")
    assert read_program_file(entry) == _TANH
    broken = tmp_path / "broken.json"
    broken.write_text('{"inputs": [1.0], "steps": [{"op": "eval", "operands": [{"node": 0}], "params": []}]}')
    with pytest.raises(ValueError, match=r"broken\.json: node 1: no op named 'eval'"):
        read_program_file(broken)
    with pytest.raises(ValueError, match="cannot read"):
        read_program_file(tmp_path / "missing.json")


def test_a_failure_is_stored_replayed_first_and_replayable_alone(tmp_path: Path) -> None:
    """verify stores its counterexample; the next run replays it before anything else; --replay runs only it."""
    first_status, first_out, first_err = _verify("_toy_engine:WrongTanh", tmp_path, examples=300)
    assert first_status == 1
    assert "stored in the example database as" in first_err
    (entry,) = ExampleDatabase(tmp_path).load("_toy_engine:WrongTanh")[0]
    assert entry.program.ops() == {"tanh"}
    assert f"program (JSON): {entry.program.to_json()}" in first_out

    again_status, again_out, again_err = _verify("_toy_engine:WrongTanh", tmp_path, examples=300)
    assert again_status == 1
    assert "replaying 1 stored counterexample(s)" in again_err
    assert again_out.startswith("  still fails: ")
    assert "stored counterexamples: 1 replayed, 0 pass now, 1 still fail" in again_out
    assert "the random run was not started" in again_out
    assert "reproduce it (engine, then the reference):" in again_out

    replay_status, replay_out, _ = _verify("_toy_engine:WrongTanh", tmp_path, replay=True)
    assert replay_status == 1
    assert "1 still fail" in replay_out
    assert "the random run was not started" not in replay_out


def test_replay_exits_0_when_every_stored_counterexample_passes_now(tmp_path: Path) -> None:
    """Stored programs that pass today: --replay exits 0; a plain run goes on to the random graphs."""
    database = ExampleDatabase(tmp_path)
    database.save("refgrad", _SQUARE, "once failed")
    database.save("refgrad", _CHAIN, "once failed")
    status, out, _ = _verify("refgrad", tmp_path, replay=True)
    assert status == 0
    assert "stored counterexamples: 2 replayed, 2 pass now, 0 still fail" in out
    full_status, full_out, _ = _verify("refgrad", tmp_path, examples=10)
    assert full_status == 0
    assert "OK: every check agreed" in full_out


def test_replay_with_nothing_stored_says_so(tmp_path: Path) -> None:
    """--replay on an empty database: exit 0, saying there was nothing to replay."""
    status, out, _ = _verify("refgrad", tmp_path, replay=True)
    assert status == 0
    assert out.startswith("no stored counterexamples for refgrad")


def _without_timing(text: str) -> str:
    return re.sub(r"^.* graphs/s$", "", text, flags=re.MULTILINE)


def test_replaying_does_not_change_the_random_run(tmp_path: Path) -> None:
    """The random part is the same with and without a database: the seed alone decides it."""
    ExampleDatabase(tmp_path).save("refgrad", _CHAIN, "once failed")
    _, with_database, _ = _verify("refgrad", tmp_path, examples=25)
    _, without, _ = _verify("refgrad", None, examples=25)
    random_part = with_database.split("\n\n", 1)[1]
    assert _without_timing(random_part) == _without_timing(without)


def test_corrupt_entries_are_warnings_on_the_command_line(tmp_path: Path) -> None:
    """A corrupt entry: one warning line naming it, and the run goes on."""
    database = ExampleDatabase(tmp_path)
    good = database.save("refgrad", _SQUARE, "once failed")
    (good.parent / "bad.json").write_text("{", encoding="utf-8")
    status, out, err = _verify("refgrad", tmp_path, replay=True)
    assert status == 0
    assert "1 replayed, 1 pass now" in out
    assert re.search(r"warning: skipping a corrupt entry .*bad\.json: ", err)


def test_program_option_checks_one_file(tmp_path: Path) -> None:
    """--program FILE: exit 0 if it passes, 1 with a script if it fails, 2 with one line if the file is bad."""
    passing = tmp_path / "square.json"
    passing.write_text(_SQUARE.to_json(), encoding="utf-8")
    status, out, _ = _verify("refgrad", None, program=passing)
    assert status == 0
    assert "OK: " in out
    failing = tmp_path / "tanh.json"
    failing.write_text(_TANH.to_json(), encoding="utf-8")
    status, out, _ = _verify("_toy_engine:WrongTanh", None, program=failing)
    assert status == 1
    assert "FAILED on _toy_engine:WrongTanh" in out
    assert "reproduce it (engine, then the reference):" in out
    hostile = tmp_path / "hostile.json"
    hostile.write_text("[" * 10_000, encoding="utf-8")
    status, out, err = _verify("refgrad", None, program=hostile)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "hostile.json: brackets nest deeper" in err


def test_the_test_suite_keeps_its_counterexamples_in_hypothesis_database() -> None:
    """Where people run the suite, its property tests run with hypothesis's example database on.

    That database replays a test's failing examples first on its next run, keyed by the test;
    verify's own database (above) keeps programs instead, which outlive changes to the strategies.
    On CI (the CI variable set) the suite follows hypothesis's CI profile instead, as
    docs/reliability.md says: the same examples every run, and no database on a fresh machine.
    """
    if "CI" in os.environ:
        assert settings().derandomize
        assert settings().database is None
    else:
        assert not settings().derandomize
        assert settings().database is not None


def test_the_command_line_help_names_the_default_database(capsys: pytest.CaptureFixture[str]) -> None:
    """The help text (written without importing the oracle) gives the real default location."""
    from refgrad.cli import build_parser
    from refgrad.oracle.database import DEFAULT_DATABASE

    with pytest.raises(SystemExit):
        build_parser().parse_args(["verify", "--help"])
    assert f"(default {DEFAULT_DATABASE.as_posix()})" in capsys.readouterr().out


def test_a_database_that_cannot_be_written_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    """If the counterexample cannot be stored (the path is a file), verify still reports it and exits 1."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    status, out, err = _verify("_toy_engine:WrongTanh", blocked, examples=300)
    assert status == 1
    assert "counterexample: " in out
    assert "warning: could not store the counterexample" in err


def _second_order_blind_mul(spec: str, attributes: Attributes = MICROGRAD_ATTRIBUTES) -> RefgradEngine:
    """For any ``spec`` (any names): refgrad, named so, with float mul partials: right at order 1, wrong at 2."""
    mul = registry["mul"]
    original = mul.partials

    def partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
        return tuple(primal(partial) for partial in original(inputs, output, params))

    return RefgradEngine({"mul": dataclasses.replace(mul, partials=partials)}, name="refgrad")


def test_entries_keep_the_order_they_were_found_at(tmp_path: Path) -> None:
    """The order is stored with the entry; an entry written without one (before it was stored) reads as order 1."""
    database = ExampleDatabase(tmp_path)
    second = database.save("e", _SQUARE, "second order failed", order=2)
    first = database.save("e", _TANH, "first order failed")
    assert json.loads(second.read_text(encoding="utf-8"))["order"] == 2
    old = json.loads(first.read_text(encoding="utf-8"))
    del old["order"]
    first.write_text(json.dumps(old), encoding="utf-8")
    stored, corrupt = database.load("e")
    assert corrupt == []
    assert {example.program: example.order for example in stored} == {_SQUARE: 2, _TANH: 1}
    entry = json.loads(second.read_text(encoding="utf-8"))
    entry["order"] = 3
    second.write_text(json.dumps(entry), encoding="utf-8")
    (bad,) = database.load("e")[1]
    assert "'order' must be 1 or 2, got 3" in bad.reason


def test_an_entry_found_at_order_2_is_replayed_at_order_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second-order counterexample still fails on replay (a plain run at order 1 must not call it fixed)."""
    monkeypatch.setattr(command, "load_engine", _second_order_blind_mul)
    ExampleDatabase(tmp_path).save("refgrad", _SQUARE, "second derivative of x * x", order=2)
    status, out, _ = _verify("refgrad", tmp_path, replay=True)
    assert status == 1, out
    assert "still fails: " in out
    assert "at --order 2" in out
    assert "1 replayed, 0 pass now, 1 still fail" in out


def test_a_failure_found_at_order_2_is_stored_with_its_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify --order 2 stores its counterexample as an order-2 entry."""
    monkeypatch.setattr(command, "load_engine", _second_order_blind_mul)
    err = io.StringIO()
    status = run_verify(
        "refgrad", examples=300, seed=0, ops="mul", out=io.StringIO(), err=err, database=tmp_path, order=2
    )
    assert status == 1
    assert "stored in the example database" in err.getvalue()
    (entry,) = ExampleDatabase(tmp_path).load("refgrad")[0]
    assert entry.order == 2


def test_an_order_2_entry_on_an_engine_without_second_order_is_not_replayed(tmp_path: Path) -> None:
    """refgrad in a worker cannot check second derivatives: the entry is reported as not replayed, --replay exits 2."""
    database = ExampleDatabase(tmp_path)
    database.save("refgrad", _SQUARE, "second derivative of x * x", order=2)
    database.save("refgrad", _TANH, "once failed")
    status, out, err = _verify("refgrad", tmp_path, replay=True, isolate=True)
    assert status == 2
    assert "not replayed: " in out
    assert "found at --order 2, which refgrad cannot check in a worker process" in out
    assert "1 replayed, 1 pass now, 0 still fail, 1 not replayed" in out
    assert "were not replayed" in err


def test_program_option_checks_an_order_2_entry_at_order_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--program on an entry found at --order 2 checks it at order 2 (exit 1 while the bug is there), or refuses."""
    entry = ExampleDatabase(tmp_path / "db").save("refgrad", _SQUARE, "second derivative of x * x", order=2)
    bare = tmp_path / "square.json"
    bare.write_text(_SQUARE.to_json(), encoding="utf-8")
    assert read_program_file_and_order(entry) == (_SQUARE, 2)
    assert read_program_file_and_order(bare) == (_SQUARE, 1)
    isolated_status, _, isolated_err = _verify("refgrad", None, program=entry, isolate=True)
    assert isolated_status == 2
    assert "was found at --order 2, which refgrad cannot check in a worker process" in isolated_err
    monkeypatch.setattr(command, "load_engine", _second_order_blind_mul)
    status, out, _ = _verify("refgrad", None, program=entry)
    assert status == 1, out
    assert "found at --order 2: checking it at order 2" in out
    assert "FAILED on refgrad" in out
    bare_status, _, _ = _verify("refgrad", None, program=bare)
    assert bare_status == 0  # a bare program has no order: the run's (1), where this bug does not show
