"""Misbehaving engines: each misbehaviour is a named failure with a shrunk program and a script, never a crash."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refgrad.oracle import EngineSpecError, Program, Ref, Step, verify
from refgrad.oracle.command import run_verify
from refgrad.oracle.worker import IsolatedEngine

_HERE = Path(__file__).parent

# Engine class in _misbehaving_engines.py -> what the report must say about it.
_NAMED = {
    "RaisesInOp": ["RuntimeError building node", "planted failure in mul"],
    "RaisesInBackward": ["KeyError in backward", "planted failure in backward"],
    "ReturnsNonFloat": ["not a number building node", "(str) without raising"],
    "ReturnsNaN": ["non-finite result building node", "produced nan without raising"],
    "MutatesInOp": ["mutation building node", "'s .data changed from"],
    "MutatesInBackward": ["mutation in backward", "'s .data changed from"],
    "ForgetsGrad": ["not a number in backward", "a node without .grad"],
    "CallsSysExit": ["SystemExit in backward: 3"],
}
# These cost a worker restart per hang or death while shrinking (about 2 s each on a busy machine).
_STOPPING = {
    "CallsOsExit": ["process exit in the engine's process", "exited with status 7"],
    "LoopsForever": ["timeout in the engine's process", "no answer within 1 s", "in backward)"],
}


def _run(
    engine: str, *extra: str, examples: int = 60, database: Path | None = None, timeout: float = 1.0
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        f"_misbehaving_engines:{engine}",
        examples=examples,
        seed=0,
        ops=None,
        out=out,
        err=err,
        timeout=timeout,
        database=database,
    )
    return status, out.getvalue(), err.getvalue()


def _check_report(status: int, out: str, said: list[str]) -> None:
    """Exit 1, and a counterexample or a broken op form saying it all, with a script that compiles."""
    assert status == 1, out
    assert "FAILED: " in out
    # Found on the probe's ordinary point (a broken op form) or in a random program (a counterexample).
    blocks = re.split(r"^(?=counterexample: |broken: )", out, flags=re.MULTILINE)[1:]
    telling = [block for block in blocks if all(words in block for words in said)]
    assert telling, out
    script = telling[0].split("reproduce it (engine, then the reference):", 1)[1]
    assert "import torch" in script
    assert "from _misbehaving_engines import" in script
    compile(script, "repro.py", "exec")  # a script, not a fragment


@pytest.mark.parametrize("engine", list(_NAMED))
def test_each_misbehaviour_is_a_named_failure_with_a_script(engine: str) -> None:
    """Raising, garbage numbers, mutation, a missing .grad, sys.exit: exit 1, the failure named, a script."""
    # None of these hangs, so the limit is never waited for: a generous one keeps a busy machine
    # (the sessions run side by side) from turning a slow answer into a timeout.
    status, out, _ = _run(engine, timeout=30.0)
    _check_report(status, out, _NAMED[engine])


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(_STOPPING))
def test_hangs_and_deaths_are_named_failures_with_a_script(engine: str) -> None:
    """os._exit and an endless loop (caught by --timeout 1) are failures too; the oracle carries on."""
    status, out, _ = _run(engine)
    _check_report(status, out, _STOPPING[engine])


def test_a_hang_is_killed_and_the_next_program_gets_a_fresh_worker() -> None:
    """One run times out (naming where the engine was stuck); the next run on a new worker answers."""
    # 3 s, not 1: the watchdog names the stuck line at 0.8 of the limit, and on a loaded machine a
    # 1-second limit left it too little time to write before the kill (the hang is found either way).
    with IsolatedEngine("_misbehaving_engines:LoopsForever", timeout=3.0) as engine:
        hang = engine.run(Program((-1.0,), (Step("neg", (Ref(0),)), Step("neg", (Ref(1),)))))
        assert hang.failure is not None
        assert hang.failure.stage == "process"
        assert hang.failure.exception == "timeout"
        assert "_misbehaving_engines.py" in hang.failure.message
        fine = engine.run(Program((1.0,), (Step("neg", (Ref(0),)), Step("neg", (Ref(1),)))))
        assert fine.failure is None
        assert fine.values == (1.0, -1.0, 1.0)
        assert fine.gradients == (1.0, -1.0, 1.0)
        assert engine.restarts == 1


def test_an_engine_that_prints_and_reads_stdin_still_passes() -> None:
    """The worker's protocol is not the engine's stdout or stdin: a chatty, correct engine passes."""
    with IsolatedEngine("_misbehaving_engines:Chatty") as engine:
        report = verify(engine, examples=40, seed_value=0, ops=["add", "mul", "tanh"])
    assert report.passed, report.failure


def test_isolated_and_in_process_runs_agree_bit_for_bit() -> None:
    """The same engine gives the same values and gradients (as floats, -0.0 included) through the worker."""
    from refgrad.oracle.engines import load_engine

    program = Program(
        (-0.0, 5e-324, 0.3),
        (
            Step("mul", (Ref(0), Ref(1))),
            Step("add", (Ref(3), Ref(2))),
            Step("tanh", (Ref(4),)),
            Step("relu", (Ref(0),)),
            Step("add", (Ref(5), Ref(6))),
        ),
    )
    direct = load_engine("_toy_engine:ToyValue").run(program)
    with IsolatedEngine("_toy_engine:ToyValue") as engine:
        isolated = engine.run(program)
    assert [value.hex() for value in isolated.values] == [value.hex() for value in direct.values]
    assert [value.hex() for value in isolated.gradients] == [value.hex() for value in direct.gradients]


_BAD_MODULES = {
    "raises": ("raise ImportError('planted')\n", "cannot import module"),
    "exits": ("import sys\nsys.exit(4)\n", "SystemExit"),
    "dies": ("import os\nos._exit(5)\n", "exited with status 5"),
    "syntax": ("def (:\n", "cannot import module"),
    "multiline": ("raise RuntimeError('first line\\nsecond line')\n", "first line"),
    "notaclass": ("Value = 3\n", "is a int, not a class"),
    "noclass": ("\n", "has no attribute 'Value'"),
}


@pytest.mark.parametrize("case", list(_BAD_MODULES))
def test_an_engine_that_cannot_be_loaded_is_a_one_line_usage_error(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Import errors, sys.exit or os._exit at import, a missing or non-class attribute: exit 2, one line."""
    source, message = _BAD_MODULES[case]
    (tmp_path / f"_bad_{case}.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the worker imports from the same path
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(f"_bad_{case}:Value", examples=10, seed=0, ops=None, out=out, err=err, database=None)
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1
    assert err.getvalue().startswith("refgrad: error: ")
    assert message in err.getvalue()


def test_an_import_that_hangs_is_a_usage_error_after_the_startup_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module whose import never finishes: EngineSpecError naming the limit, and the worker is gone."""
    (tmp_path / "_bad_hangs.py").write_text("while True:\n    pass\n", encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the worker imports from the same path
    with pytest.raises(EngineSpecError, match="loading it took longer than 2 s"):
        IsolatedEngine("_bad_hangs:Value", startup_timeout=2.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--timeout", text], "positive number of seconds, at most 86400") for text in ("0", "-1", "nan", "inf", "1e300")],
)
def test_bad_timeouts_are_usage_errors(arguments: list[str], message: str) -> None:
    """--timeout must be a positive number of seconds, at most a day (longer overflows select())."""
    out, err = io.StringIO(), io.StringIO()
    timeout = float(arguments[1])
    status = run_verify("refgrad", examples=10, seed=0, ops=None, out=out, err=err, timeout=timeout, database=None)
    assert status == 2
    assert message in err.getvalue()


def test_timeout_and_no_isolation_contradict() -> None:
    """A time limit needs a worker: --timeout with --no-isolate is a usage error."""
    out, err = io.StringIO(), io.StringIO()
    status = run_verify("refgrad", examples=10, seed=0, ops=None, out=out, err=err, timeout=2.0, isolate=False)
    assert status == 2
    assert "--timeout needs the engine in a worker process" in err.getvalue()


@pytest.mark.slow
def test_the_command_line_survives_os_exit_and_reports_it(tmp_path: Path) -> None:
    """From a real command line in the engine's directory: exit 1, the death named, the entry stored."""
    for name in ("_toy_engine.py", "_misbehaving_engines.py"):
        (tmp_path / name).write_text((_HERE / name).read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "refgrad", "verify", "--engine", "_misbehaving_engines:CallsOsExit", "--examples", "40"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exited with status 7" in result.stdout
    assert "Traceback" not in result.stderr
    assert len(list((tmp_path / ".refgrad" / "examples").glob("*/*.json"))) == 1


def test_the_portable_reader_thread_answers_and_times_out_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where select() cannot wait on a pipe (Windows), a reader thread feeds the answers: same results."""
    monkeypatch.setattr(os, "name", "nt")
    engine = IsolatedEngine("_misbehaving_engines:LoopsForever", timeout=1.0)
    monkeypatch.undo()
    with engine:
        fine = engine.run(Program((1.0,), (Step("neg", (Ref(0),)), Step("neg", (Ref(1),)))))
        assert fine.failure is None
        assert fine.gradients == (1.0, -1.0, 1.0)
        hang = engine.run(Program((-1.0,), (Step("neg", (Ref(0),)), Step("neg", (Ref(1),)))))
        assert hang.failure is not None
        assert hang.failure.exception == "timeout"


def test_an_engine_module_may_import_the_oracle_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker skips refgrad.oracle's __init__ to start fast, but completes it when the engine asks for a name."""
    source = "from refgrad.oracle import programs, verify\nfrom refgrad.micrograd.engine import Value\n"
    (tmp_path / "_uses_the_oracle.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the worker imports from the same path
    with IsolatedEngine("_uses_the_oracle:Value") as engine:
        run = engine.run(Program((2.0,), (Step("tanh", (Ref(0),)),)))
    assert run.failure is None
    assert run.gradients[0] == pytest.approx(1.0 - run.values[1] ** 2, rel=1e-15)


def test_built_in_engines_run_in_a_worker_when_asked() -> None:
    """--isolate puts refgrad's own engine in a worker: the same verdict, under the same name, and a note.

    The worker protocol carries programs and their runs; forward mode is only checked in-process, and
    the command line says so.
    """
    out, err = io.StringIO(), io.StringIO()
    status = run_verify("refgrad", examples=20, seed=0, ops=None, out=out, err=err, isolate=True, database=None)
    assert status == 0, out.getvalue()
    assert "20 graphs checked on refgrad (seed 0)" in out.getvalue()
    assert "refgrad runs in a worker process, where its forward mode is not checked" in err.getvalue()


def test_a_started_run_left_uncollected_does_not_answer_out_of_turn() -> None:
    """start() then start() again: the first answer is dropped with its worker, the second is right."""
    first = Program((1.0,), (Step("neg", (Ref(0),)),))
    second = Program((2.0,), (Step("mul", (Ref(0), Ref(0))),))
    with IsolatedEngine("_toy_engine:ToyValue") as engine:
        abandoned = engine.start(first)
        run = engine.start(second)()
        assert run.values == (2.0, 4.0)
        assert engine.restarts == 1
        with pytest.raises(RuntimeError, match="collected once"):
            abandoned()


@pytest.mark.slow
def test_shrinking_waits_for_at_most_ten_hangs() -> None:
    """An engine hanging on every failing candidate: ten timeouts while shrinking, then the smallest so far.

    Hangs before shrinking: one in the probe (which then stops probing), one among the structured
    programs (which then end) and the first random failure; so at most 13 workers are killed,
    however many candidates hypothesis would like to try. The engine deadlocks rather than spins:
    the count of hangs is the point here (the tests above kill a spinning engine), and 13 spins
    of 3 s would keep a core busy for 40 s of the suite.
    """
    # 3 s, not 1: the watchdog names the stuck line at 0.8 of the limit, and on a loaded machine a
    # 1-second limit left it too little time to write before the kill (the hang is found either way).
    with IsolatedEngine("_misbehaving_engines:Deadlocks", timeout=3.0) as engine:
        report = verify(engine, examples=60, seed_value=0)
        restarts = engine.restarts
    assert report.failure is not None
    detail = report.failure.failures[0].detail
    assert "timeout in the engine's process" in detail
    assert "_misbehaving_engines.py" in detail
    assert "in backward)" in detail  # the watchdog names the line a blocked engine waits at, too
    assert restarts <= 13
