"""verify --engine-cmd: engines in any language through the JSON-lines protocol (docs/protocol.md).

The examples (Rust, JavaScript, C++, Python) are built and run as their READMEs say; a copy with one
planted wrong rule is caught and the op named. Adapters that break the protocol are reported as
the adapter's mistakes, one line each, never as engine defects; hangs and crashes as for a
Python engine.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest

from refgrad.cli import main
from refgrad.ops import registry
from refgrad.oracle.blocks import BLOCK_SIZE
from refgrad.oracle.command import run_verify
from refgrad.oracle.compare import check_program
from refgrad.oracle.engines import EngineSpecError, probe
from refgrad.oracle.first_order import HIDDEN_FROM_THE_ENDS
from refgrad.oracle.program import Const, Program, Ref, Step
from refgrad.oracle.protocol import CommandEngine, conformance_programs, protocol_check
from refgrad.oracle.strategies import all_forms

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HERE = Path(__file__).resolve().parent
_PYTHON = f"{sys.executable} {EXAMPLES / 'python' / 'adapter.py'}"


def _verify(
    command: str, examples: int = 150, output_format: str = "text", jobs: int = 1, ops: str | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        "refgrad",
        engine_cmd=command,
        examples=examples,
        seed=0,
        ops=ops,
        out=out,
        err=err,
        database=None,
        output_format=output_format,
        jobs=jobs,
    )
    return status, out.getvalue(), err.getvalue()


def _defect_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("DEFECT")]


def _planted(source: Path, destination: Path, file: str, right: str, wrong: str) -> Path:
    """A copy of an example with one rule replaced (the line must be there exactly once)."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("target"))
    path = destination / file
    text = path.read_text()
    assert text.count(right) == 1, f"the line to plant the bug on is not in {file} once"
    path.write_text(text.replace(right, wrong))
    return destination


def _check_example(command: str, planted_command: str, op: str) -> None:
    assert protocol_check(command, io.StringIO()) == 0
    status, out, _ = _verify(command)
    assert status == 0, out
    assert "OK: every check agreed" in out
    status, out, _ = _verify(planted_command)
    assert status == 1, out
    defects = _defect_lines(out)
    assert defects, out
    assert all(f"of {op} " in line for line in defects), defects  # the planted op, and no other, is blamed


@pytest.mark.slow
def test_the_rust_example_passes_and_its_planted_wrong_rule_is_caught_and_named(tmp_path: Path) -> None:
    def build(crate: Path) -> str:
        target = tmp_path / f"target-{crate.name}"
        cargo = ["cargo", "build", "--release", "--offline", "--quiet", "--manifest-path", str(crate / "Cargo.toml")]
        subprocess.run(cargo, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)}, timeout=600)
        return str(target / "release" / "adapter")

    rule = "                    adjoint[y.0] += g * v(x);"  # d(x * y)/dy = x
    planted = _planted(EXAMPLES / "rust", tmp_path / "planted", "src/engine.rs", rule, rule.replace("v(x)", "v(y)"))
    _check_example(build(EXAMPLES / "rust"), build(planted), "mul")


@pytest.mark.slow
def test_the_javascript_example_passes_and_its_planted_wrong_rule_is_caught_and_named(tmp_path: Path) -> None:
    rule = "      y.grad += x.data * out.grad;"  # d(x * y)/dy = x
    planted = _planted(
        EXAMPLES / "javascript", tmp_path / "planted", "engine.js", rule, rule.replace("x.data", "y.data")
    )
    _check_example(f"node {EXAMPLES / 'javascript' / 'adapter.js'}", f"node {planted / 'adapter.js'}", "mul")


@pytest.mark.slow
def test_the_cpp_example_passes_and_its_planted_wrong_rule_is_caught_and_named(tmp_path: Path) -> None:
    def build(folder: Path) -> str:
        binary = tmp_path / f"adapter-{folder.name}"
        compile_it = ["g++", "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-o", str(binary)]
        subprocess.run([*compile_it, str(folder / "adapter.cpp")], check=True, timeout=600)
        return str(binary)

    rule = "      rhs->grad += lhs->data * out->grad;"  # d(x * y)/dy = x
    planted = _planted(EXAMPLES / "cpp", tmp_path / "planted", "autograd.hpp", rule, rule.replace("lhs->", "rhs->"))
    _check_example(build(EXAMPLES / "cpp"), build(planted), "mul")


def _card(text: str) -> dict[str, object]:
    """A JSON report without what differs between two runs of one engine: its name and the times."""
    card: dict[str, object] = json.loads(text)
    for key in ("engine", "seconds", "random_seconds"):
        card.pop(key)
    findings = cast("list[dict[str, object]]", card["findings"])
    for finding in findings:
        finding.pop("script")  # the repro: the class's own script, or one that runs the adapter
    return card


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ToyValue", "WrongTanh", "ReluKink"])
def test_a_python_engine_gives_the_same_card_through_the_protocol_as_in_process(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(HERE)  # the adapter imports the engine from the current directory
    out = io.StringIO()
    status = run_verify(
        f"_toy_engine:{engine}", examples=150, seed=0, ops=None, out=out, database=None, output_format="json", jobs=1
    )
    direct = _card(out.getvalue())
    # Gradient accumulation (a graph built on another's nodes) is a check for Python classes only.
    assert direct.pop("accumulation") is not None
    through_status, through_out, _ = _verify(f"{_PYTHON} _toy_engine:{engine}", output_format="json")
    through = _card(through_out)
    assert through.pop("accumulation") is None
    assert (through_status, through) == (status, direct)


@pytest.mark.slow
def test_two_worker_processes_each_with_its_own_adapter_give_the_same_card_as_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(HERE)
    command = f"{_PYTHON} _toy_engine:WrongTanh"
    examples = BLOCK_SIZE + 50  # two blocks: one for each worker
    one_status, one, _ = _verify(command, examples=examples, output_format="json")
    two_status, two, _ = _verify(command, examples=examples, output_format="json", jobs=2)
    assert one_status == two_status == 1
    one_card, two_card = _card(one), _card(two)
    assert (two_card.pop("jobs"), one_card.pop("jobs")) == (2, 1)
    assert two_card == one_card, _differences(one_card, two_card)
    assert any(finding["op"] == "tanh" for finding in cast("list[dict[str, object]]", one_card["findings"]))


def _differences(first: object, second: object, at: str = "card") -> list[str]:
    """Where two JSON values differ, as ``path: first != second`` lines."""
    if isinstance(first, dict) and isinstance(second, dict):
        one, two = cast("dict[str, object]", first), cast("dict[str, object]", second)
        return [
            line for key in sorted({*one, *two}) for line in _differences(one.get(key), two.get(key), f"{at}.{key}")
        ]
    return [] if first == second else [f"{at}: {first!r} != {second!r}"]


@pytest.mark.slow
def test_an_engine_that_reports_the_ends_only_is_checked_and_its_wrong_rule_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(HERE)
    status, out, _ = _verify(f"{_PYTHON} _toy_engine:ToyValue --ends-only")
    assert status == 0, out
    status, out, _ = _verify(f"{_PYTHON} _toy_engine:WrongTanh --ends-only")
    assert status == 1
    defects = _defect_lines(out)
    assert defects, out
    assert all("of tanh " in line for line in defects), defects


# Adapters that break the protocol, each in one way. {answer} is the good answer's dict.
_GOOD = """
import json, sys
print(json.dumps({handshake}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "shutdown" in request:
        {on_shutdown}
    program = request["program"]
    inputs = len(program["inputs"])
    answer = {{"id": request["id"], "value": 1.0, "gradients": [0.0] * inputs}}
    {mistake}
    sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
"""
_HANDSHAKE = '{"protocol": 1, "engine": "broken", "ops": ["add", "mul", "log"]}'
_BROKEN = {
    "stray output": ('print("computing...")', "a line that is not a JSON object: 'computing...'"),
    "a gradient short": (
        'answer["gradients"] = answer["gradients"][1:]',
        "'gradients' has 1 numbers; the program has 2 inputs",
    ),
    "no id": ('del answer["id"]', "has id None"),
    "null for NaN": ('answer["value"] = None', "'value' is null, not a number"),
    "an error without domain": ('answer = {"id": request["id"], "error": {"message": "x"}}', "'domain' must be"),
}


def _adapter(tmp_path: Path, mistake: str = "pass", handshake: str = _HANDSHAKE, on_shutdown: str = "break") -> str:
    script = tmp_path / "adapter.py"
    body = _GOOD.format(handshake=repr(json.loads(handshake)), mistake=mistake, on_shutdown=on_shutdown)
    script.write_text(textwrap.dedent(body))
    return f"{sys.executable} {script}"


@pytest.mark.parametrize("case", list(_BROKEN))
def test_protocol_check_names_each_adapter_mistake_and_verify_stops_with_one_line(tmp_path: Path, case: str) -> None:
    mistake, said = _BROKEN[case]
    command = _adapter(tmp_path, mistake)
    out = io.StringIO()
    assert protocol_check(command, out) == 1
    lines = out.getvalue().splitlines()
    assert any(line.startswith("adapter error: program 1, add (node node): ") and said in line for line in lines), lines
    assert lines[-1].startswith("FAIL: ")
    status, text, err = _verify(command, examples=10)
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("refgrad: error: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith("refgrad: error: --engine-cmd ")
    assert "the adapter broke the protocol" in errors[0]
    assert said in errors[0]
    assert "DEFECT" not in text  # never counted against the engine


def test_protocol_check_passes_a_conforming_adapter_and_checks_its_shutdown(tmp_path: Path) -> None:
    out = io.StringIO()
    assert protocol_check(_adapter(tmp_path), out) == 0, out.getvalue()
    sent = len(conformance_programs(frozenset({"add", "mul", "log"})))
    # add and mul in 3 forms, log in 1; then one node as both operands, an unused input, inputs -0.0, subnormal
    # and huge, 100 steps, and log of -1.
    assert sent == 7 + 7
    assert out.getvalue().startswith("OK: ")
    assert f"on {sent} programs" in out.getvalue()
    lingering = _adapter(tmp_path, on_shutdown="continue")  # ignores shutdown, exits at the end of its input
    assert protocol_check(lingering, io.StringIO()) == 0
    stuck = _adapter(tmp_path, on_shutdown="import time; time.sleep(60)")
    out = io.StringIO()
    assert protocol_check(stuck, out) == 1
    assert "adapter error: shutdown: still running 5 s after" in out.getvalue()


@pytest.mark.parametrize(
    ("handshake", "said"),
    [
        ('{"protocol": 2, "engine": "x", "ops": []}', " says protocol 2; refgrad speaks protocol 1"),
        ('{"protocol": 1, "engine": "x", "ops": ["sin"]}', " lists ops refgrad does not have: sin"),
        ('{"protocol": 1, "ops": []}', "'s 'engine' must be a non-empty string (the name the card uses)"),
    ],
)
def test_a_wrong_handshake_is_one_line_usage_error(tmp_path: Path, handshake: str, said: str) -> None:
    command = _adapter(tmp_path, handshake=handshake)
    status, _, err = _verify(command, examples=10)
    assert status == 2
    assert err.splitlines() == [f"refgrad: error: --engine-cmd {command!r}: its handshake{said}"]
    with pytest.raises(EngineSpecError, match=re.escape(said)):
        CommandEngine(command)


def test_a_command_that_cannot_start_is_one_line() -> None:
    status, _, err = _verify("/nonexistent/adapter --flag", examples=10)
    assert status == 2
    cannot = "cannot start '/nonexistent/adapter': No such file or directory"
    assert err == f"refgrad: error: --engine-cmd '/nonexistent/adapter --flag': {cannot}\n"


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_protocol_check_refuses_a_timeout_that_is_no_time_limit(
    tmp_path: Path, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _adapter(tmp_path)
    assert main(["verify", "--engine-cmd", command, "--protocol-check", "--timeout", timeout]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("refgrad: error: --timeout must be a positive number of seconds")
    assert captured.err.count("\n") == 1


_PROGRAM = Program((0.5, 2.0), (Step("mul", (Ref(0), Ref(1)), ()),))


def test_a_hanging_or_crashing_adapter_is_a_process_failure_and_is_restarted(tmp_path: Path) -> None:
    hangs = _adapter(tmp_path, 'import time\n    if program["inputs"][0] == 0.5: time.sleep(60)')
    with CommandEngine(hangs, timeout=1.0) as engine:
        run = engine.run(_PROGRAM)
        assert run.failure is not None
        assert (run.failure.stage, run.failure.exception) == ("process", "timeout")
        assert "no answer within 1 s; the adapter was killed and restarted" in run.failure.message
        other = Program((1.5, 2.0), _PROGRAM.steps)
        assert engine.run(other).failure is None  # a fresh adapter
        assert engine.restarts == 1
    (tmp_path / "crash").mkdir()
    crashes = _adapter(
        tmp_path / "crash", 'sys.stderr.write("segfault-ish\\n"); sys.stderr.flush(); import os; os._exit(3)'
    )
    with CommandEngine(crashes) as engine:
        run = engine.run(_PROGRAM)
        assert run.failure is not None
        assert run.failure.exception == "process exit"
        assert "the adapter exited with status 3; its last words: segfault-ish; restarted" in run.failure.message


def test_non_finite_numbers_are_the_engines_domain_signal_as_for_a_python_engine(tmp_path: Path) -> None:
    command = _adapter(tmp_path, 'answer["value"] = "Infinity"')
    with CommandEngine(command) as engine:
        run = engine.run(_PROGRAM)
    assert run.failure is not None
    assert (run.failure.stage, run.failure.exception, run.failure.domain_signal) == (
        "forward",
        "non-finite result",
        True,
    )
    assert run.failure.message == "the engine produced inf without raising"


def test_a_strict_adapter_is_not_blamed_for_a_constants_gradient_and_its_unlisted_ops_are_not_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(HERE)
    with CommandEngine(f"{_PYTHON} _toy_engine:ToyValue --strict") as engine:
        assert engine.strict
        # d out / d c = -x / c**2 overflows for the constant c, which an adapter never differentiates.
        outcome = check_program(Program((1.0,), (Step("div", (Ref(0), Const(1e-300)), ()),)), engine)
        assert outcome.engine_failure is None
        assert not outcome.failures, outcome.failures
        assert any(check.kind == "value" for check in outcome.checks)
        # Out of the domain, the strict adapter answers an error, which passes.
        outcome = check_program(Program((-1.0,), (Step("log", (Ref(0),), ()),)), engine)
        assert outcome.engine_failure is not None
        assert outcome.engine_failure.domain_signal
        assert not outcome.failures
    # The run's edge inputs hold that program (div (x, c) at c = 1e-300): no warning either.
    status, out, _ = _verify(f"{_PYTHON} _toy_engine:ToyValue --strict", examples=20, ops="div")
    assert status == 0, out
    assert "WARNING" not in out, out
    strict = _HANDSHAKE.replace('"ops"', '"strict": true, "ops"')
    with CommandEngine(_adapter(tmp_path, handshake=strict)) as engine:
        lacking = probe(engine, all_forms(None))
    assert {op for op, _ in lacking} == {spec.name for spec in registry} - {"add", "mul", "log"}


_ANY_OPS = '{"protocol": 1, "engine": "fixed", "ops": ["mul", "div", "pow"]}'


def test_a_forward_refusal_without_a_node_is_right_only_where_a_value_is_not_finite(tmp_path: Path) -> None:
    refuses = 'answer = {"id": request["id"], "error": {"message": "no", "domain": True}}'
    with CommandEngine(_adapter(tmp_path, refuses, handshake=_ANY_OPS)) as engine:
        # x ** 0.5 at 0: the value is finite, the derivative is not: backward's to refuse.
        at_zero = check_program(Program((0.0,), (Step("pow", (Ref(0),), (0.5,)),)), engine)
        assert [check.kind for check in at_zero.failures] == ["domain"]
        assert "refused while building the graph, but every value" in at_zero.failures[0].detail
        # At -1 the value is not real: the refusal is right.
        assert not check_program(Program((-1.0,), (Step("pow", (Ref(0),), (0.5,)),)), engine).failures


def test_an_ends_only_answer_is_not_blamed_for_an_inner_value_it_cannot_show(tmp_path: Path) -> None:
    # 1 / (x * x) at x = 1e200: x * x overflows, the output is 0; an adapter without "nodes" shows
    # only the output (right) and the input's gradient: the inner infinity is neither blamed nor passed.
    answers = 'answer["value"] = 0.0; answer["gradients"] = [0.0] * inputs'
    program = Program((1e200,), (Step("mul", (Ref(0), Ref(0)), ()), Step("div", (Const(1.0), Ref(1)), ())))
    with CommandEngine(_adapter(tmp_path, answers, handshake=_ANY_OPS)) as engine:
        outcome = check_program(program, engine)
    assert not outcome.failures
    assert [(skip.kind, skip.reason) for skip in outcome.skips] == [("domain", HIDDEN_FROM_THE_ENDS)]


def test_an_adapter_that_dies_before_its_handshake_shows_its_last_words(tmp_path: Path) -> None:
    dies = "sh -c 'echo \"cannot load libengine.so\" >&2; exit 127'"
    with pytest.raises(EngineSpecError, match=r"status 127 before its handshake \(its standard error: cannot load"):
        CommandEngine(dies)
    out = io.StringIO()
    assert protocol_check(dies, out) == 1
    assert "its standard error: cannot load libengine.so" in out.getvalue()
