"""The report card: every defect in one run, fragile formulas as warnings, --strict, and the JSON card."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import micrograd.engine
import pytest
from _corpus import BreadthFirst, EagerRules, ExpByPower, ForgetsOutGrad, LectureValue, ManyBugs, SetOrder
from _toy_engine import ReluKink, StaleGrads, ToyValue, ZeroGradSelfOnly

from refgrad.cli import main
from refgrad.ops import N, Params, primal, registry
from refgrad.oracle import (
    IsolatedEngine,
    MicrogradStyleEngine,
    Program,
    Ref,
    RefgradEngine,
    Step,
    check_engine,
    load_engine,
    verify,
)
from refgrad.oracle.checks import Check, Outcome
from refgrad.oracle.command import run_verify
from refgrad.oracle.compare import check_program
from refgrad.oracle.diagnosis import (
    _how_sure,  # pyright: ignore[reportPrivateUsage]  # tested directly: one branch needs a contrived outcome
    random_finding,
)
from refgrad.oracle.exact_reference import exact_reference
from refgrad.oracle.findings import (
    ACCUMULATION,
    BROKEN_OP,
    COMPOSITION,
    DEEP_GRAPH,
    FRAGILE,
    KINK_CONVENTION,
    NONDETERMINISTIC,
    WRONG_DERIVATIVE,
    WRONG_VALUE,
    Finding,
)
from refgrad.oracle.report import format_report


def _kinds(findings: Sequence[Finding]) -> set[tuple[str, str | None]]:
    return {(finding.kind.name, finding.op) for finding in findings}


def test_micrograd_passes_by_default_with_its_fragilities_as_warnings() -> None:
    """micrograd 0.1.0: no defect; x ** 0 at 0, tiny divisors and the deep chain are warnings; --strict fails it."""
    engine = MicrogradStyleEngine(micrograd.engine.Value)
    report = verify(engine, examples=60, seed_value=0)
    assert report.passed, [finding.summary for finding in report.defects]
    assert report.defects == ()
    assert {(FRAGILE.name, "pow"), (FRAGILE.name, "div"), (DEEP_GRAPH.name, None)} <= _kinds(report.warnings)
    power = next(f for f in report.warnings if f.kind is FRAGILE and f.op == "pow")
    assert power.program is not None
    assert power.program.inputs == (0.0,)
    assert power.program.steps[0].params == (0.0,)  # x ** 0 at x = 0: 0 * 0.0 ** -1 divides by zero
    assert "ZeroDivisionError" in power.summary
    text = format_report(report)
    assert text.startswith(f"PASS: {engine.name}: 0 defects, {len(report.warnings)} warnings; checked 15 of 22")
    assert "PASSED with" in text
    strict = verify(engine, examples=60, seed_value=0, strict=True, max_defects=1)
    assert not strict.passed
    assert strict.verdict == "fail"
    assert strict.failure is not None


def test_every_defect_of_an_engine_is_found_in_one_run() -> None:
    """Three planted defects (tanh's derivative, c - x computing x - c, relu returning nothing) in one report."""
    report = verify(MicrogradStyleEngine(ManyBugs), examples=60, seed_value=1)
    assert not report.passed
    assert _kinds(report.defects) == {
        (WRONG_DERIVATIVE.name, "tanh"),
        (WRONG_VALUE.name, "sub"),
        (BROKEN_OP.name, "relu"),
    }
    by_op = {finding.op: finding for finding in report.defects}
    assert by_op["tanh"].summary.startswith("the derivative of tanh in x at x = 0.5")
    assert "1 - tanh(x)**2" in by_op["tanh"].summary
    assert (
        "torch (float64), the exact reference (mpmath) and finite differences all say so, and agree with each other to"
        in by_op["tanh"].summary
    )
    assert by_op["sub"].form == "sub (c, x)"
    assert "None (the method returned nothing)" in by_op["relu"].summary
    for finding in report.defects:
        assert finding.program is not None
        assert len(finding.program.steps) == 1
        assert finding.script is not None
    text = format_report(report)
    assert text.startswith("FAIL: ")
    assert "FAILED: 3 defects" in text
    status = {line.split()[0]: line.split()[1] for line in text.split("\n\n")[1].splitlines()[1:]}
    assert status["tanh"] == status["sub"] == "DEFECT"
    assert status["relu"] == "DEFECT"  # broken, so in no program, and still in the table
    assert status["mul"] == "ok"


def test_a_backward_that_ignores_out_grad_is_named_by_every_nodes_grad() -> None:
    """exp's backward without ``* out.grad``: right alone, so only programs around it fail; each .grad names exp."""
    report = verify(MicrogradStyleEngine(ForgetsOutGrad), examples=60, seed_value=0)
    assert _kinds(report.defects) == {(WRONG_DERIVATIVE.name, "exp")}
    (exp,) = report.defects
    assert "is the last whose .grad disagrees" in exp.summary
    assert "it does not multiply by its output's gradient (out.grad)" in exp.summary
    assert exp.program is not None
    assert len(exp.program.steps) >= 2  # exp alone passes: it takes a step after it to show
    status = {line.split()[0]: line.split()[1] for line in format_report(report).split("\n\n")[1].splitlines()[1:]}
    assert status["exp"] == "DEFECT"
    assert status["mul"] != "DEFECT"


def _tanh_doubled_far_out(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    """tanh's partial, doubled for 3.5 < |x| < 50: right at every point tanh is tried at alone."""
    (partial,) = registry["tanh"].partials(inputs, output, params)
    return (partial * 2.0 if 3.5 < abs(primal(inputs[0])) < 50.0 else partial,)


def test_a_rule_wrong_only_at_some_inputs_is_named_by_checking_it_alone_there() -> None:
    """exp, exp, tanh at 0.5 feeds tanh 5.2: the step whose backward passed on a wrong number, alone at 5.2, fails."""
    tanh = dataclasses.replace(registry["tanh"], partials=_tanh_doubled_far_out)
    engine = RefgradEngine({"tanh": tanh}, name="far-out tanh")
    program = Program((0.5,), (Step("exp", (Ref(0),)), Step("exp", (Ref(1),)), Step("tanh", (Ref(2),))))
    finding = random_finding(check_program(program, engine), engine, 1, at_edge=False)
    assert (finding.kind, finding.op) == (WRONG_DERIVATIVE, "tanh")
    assert "node 2 (exp) is the last whose .grad disagrees" in finding.summary
    assert "tanh alone at the operands it got here (program(x0=5.2003257647899614): n1 = x0.tanh()) is wrong too" in (
        finding.summary
    )


def _pow_by_division(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    """pow's partial as ``c * x ** c / x``: right at moderate magnitudes; ``x ** c`` under- or overflows first."""
    (x,) = inputs
    (c,) = params
    return (0.0,) if c == 0.0 else (c * output / x,)


def test_a_custom_rule_that_divides_is_fragile_not_wrong() -> None:
    """A custom pow rule dividing out x: pow warnings at 0 and at 1e-300, alone and in random programs; no defect."""
    engine = RefgradEngine({"pow": dataclasses.replace(registry["pow"], partials=_pow_by_division)}, name="pow / x")
    report = verify(engine, examples=30, seed_value=0)
    # The random programs at edge inputs fail too: each failure, reduced and redrawn at moderate
    # magnitudes, passes, so it is a fragility of pow (the one already found), never a defect.
    assert report.passed, [finding.summary for finding in report.defects]
    assert report.defects == ()
    assert _kinds(report.warnings) == {(FRAGILE.name, "pow")}
    summaries = " ".join(finding.summary for finding in report.warnings)
    assert "pow at x = 0.0, c = 1.0: DomainError in backward" in summaries  # 0 / 0
    assert "a wrong gradient at x = 1e-300, c = 2.0" in summaries  # (1e-300) ** 2 is 0
    assert not verify(engine, examples=30, seed_value=0, strict=True, max_defects=1).passed


def test_the_lecture_style_engine_is_right_and_fragile() -> None:
    """tanh from exp, x * y ** -1, recursion: passes by default; tanh at |x| = 400 and x ** 0 at 0 are warnings."""
    report = verify(MicrogradStyleEngine(LectureValue), examples=60, seed_value=2)
    assert report.passed, [finding.summary for finding in report.defects]
    warnings = _kinds(report.warnings)
    assert {(FRAGILE.name, "tanh"), (FRAGILE.name, "pow"), (DEEP_GRAPH.name, None)} <= warnings
    tanh = next(f for f in report.warnings if f.op == "tanh")
    assert "OverflowError in the forward pass at x = 1e+300, x = 400.0" in tanh.summary  # e ** 2x overflows
    assert "a wrong value at x = 1e-300" in tanh.summary  # e ** 2x - 1 cancels
    assert "sub (c, x)" in report.unsupported  # no __rsub__
    # Under --strict the first warning fails the run (max_defects=1: no need to look further).
    assert not verify(MicrogradStyleEngine(LectureValue), examples=60, seed_value=2, strict=True, max_defects=1).passed


def test_derivatives_computed_in_the_forward_pass_are_fine() -> None:
    """Local derivatives computed eagerly (the same numbers): no finding at all, so --strict passes too."""
    report = verify(MicrogradStyleEngine(EagerRules), examples=60, seed_value=3, strict=True)
    assert report.findings == ()
    assert report.passed
    assert report.graphs == 60


def test_a_breadth_first_backward_is_a_composition_defect() -> None:
    """A node passed on before all its consumers added to it: each op alone passes, shared nodes do not."""
    report = verify(MicrogradStyleEngine(BreadthFirst), examples=60, seed_value=4)
    assert not report.passed
    assert [finding.kind for finding in report.defects] == [COMPOSITION]
    (finding,) = report.defects
    assert finding.op is None
    assert finding.summary.startswith("gradients through a node used twice")
    assert report.random_skipped is not None
    assert report.graphs == 0


def test_answers_that_vary_between_runs_are_a_defect_not_a_crash() -> None:
    """A backward in set order: the same program gives different gradients; a defect with its program."""
    report = verify(MicrogradStyleEngine(SetOrder), examples=50, seed_value=1)
    assert not report.passed
    varying = [finding for finding in report.defects if finding.kind is NONDETERMINISTIC]
    assert varying
    assert varying[0].program is not None
    assert "gave different results on 4 runs" in varying[0].summary


def test_another_convention_at_a_kink_is_a_warning() -> None:
    """relu'(0) = 1: the default run passes with a kink-convention warning naming PyTorch's; --strict fails."""
    report = verify(MicrogradStyleEngine(ReluKink), examples=60, seed_value=5)
    assert report.passed
    (warning,) = report.warnings
    assert warning.kind is KINK_CONVENTION
    assert warning.op == "relu"
    assert "relu'(0) = 0" in warning.summary
    assert not verify(MicrogradStyleEngine(ReluKink), examples=60, seed_value=5, strict=True, max_defects=1).passed


def test_refgrad_passes_strictly() -> None:
    """refgrad's own engine: no finding at all, so --strict passes too."""
    report = verify(RefgradEngine(), examples=60, seed_value=6, strict=True)
    assert report.passed, [finding.summary for finding in report.findings]
    assert report.structured > 500


def _json_run(engine: str, *, strict: bool = False) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        engine,
        examples=60,
        seed=0,
        ops=None,
        out=out,
        err=err,
        database=None,
        isolate=False,
        strict=strict,
        output_format="json",
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()  # exactly one JSON object, nothing else on stdout
    card: dict[str, Any] = json.loads(lines[0])
    assert isinstance(card, dict)
    return status, card, err.getvalue()


@pytest.mark.parametrize(
    ("engine", "strict", "status", "verdict"),
    [
        ("_corpus:ManyBugs", False, 1, "fail"),
        ("_corpus:EagerRules", False, 0, "pass"),
        ("_corpus:LectureValue", False, 0, "pass"),
        ("_corpus:LectureValue", True, 1, "fail"),
    ],
    ids=["defects", "clean", "warnings", "warnings-strict"],
)
def test_the_json_card_has_the_verdict_and_every_finding(engine: str, strict: bool, status: int, verdict: str) -> None:
    """--format json: one object with engine, verdict, strict, checked, unsupported, graphs, findings; exit 0 or 1."""
    got, card, _ = _json_run(engine, strict=strict)
    assert got == status
    assert card["engine"] == engine
    assert card["verdict"] == verdict
    assert card["strict"] is strict
    assert isinstance(card["checked"], list)
    assert isinstance(card["unsupported"], dict)
    assert card["graphs"] == 60 or card["verdict"] == "fail"
    findings: list[dict[str, Any]] = card["findings"]
    assert isinstance(findings, list)
    for finding in findings:
        assert set(finding) >= {"severity", "kind", "op", "summary", "program"}
        assert finding["severity"] in ("defect", "warning")
    if engine.endswith("ManyBugs"):
        assert {(f["kind"], f["op"]) for f in findings if f["severity"] == "defect"} == {
            ("wrong-derivative", "tanh"),
            ("wrong-value", "sub"),
            ("broken-op", "relu"),
        }
        assert all(f["program"] is not None for f in findings if f["severity"] == "defect")
    if engine.endswith("EagerRules"):
        assert findings == []


def test_the_json_card_on_a_usage_error_is_nothing_on_stdout() -> None:
    """Exit 2 and an empty standard output: a grader's parser sees no half-written card."""
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        "no_such_module_xyz:Value", examples=5, seed=0, ops=None, out=out, err=err, database=None, output_format="json"
    )
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("refgrad: error: ")


def _junit_run(engine: str) -> tuple[int, ET.Element]:
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        engine, examples=40, seed=0, ops=None, out=out, err=err, database=None, isolate=False, output_format="junit"
    )
    return status, ET.fromstring(out.getvalue())


def test_the_junit_card_has_a_testcase_per_op_form_and_the_compositions() -> None:
    """--format junit: a failing testcase per defective form (its kind as type), skipped ones for unsupported forms."""
    status, suite = _junit_run("_corpus:ManyBugs")
    assert status == 1
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert suite.get("tests") == str(len(cases))
    assert {"compositions", "coverage", "tanh", "sub (c, x)", "relu"} <= set(cases)
    failed = {name: case.find("failure") for name, case in cases.items() if case.find("failure") is not None}
    assert set(failed) == {"tanh", "sub (c, x)", "relu"}
    assert suite.get("failures") == "3"
    assert {name: failure.get("type") for name, failure in failed.items() if failure is not None} == {
        "tanh": "wrong-derivative",
        "sub (c, x)": "wrong-value",
        "relu": "broken-op",
    }
    status, suite = _junit_run("_corpus:LectureValue")
    assert status == 0
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert "sub (c, x)" in {case.get("name") for case in skipped}  # no __rsub__
    assert suite.get("failures") == "0"
    tanh = next(case for case in suite.iter("testcase") if case.get("name") == "tanh")
    said = tanh.find("system-out")
    assert said is not None
    assert said.text is not None
    assert said.text.startswith("warning [fragile] tanh fails at")


def test_one_call_checks_an_engine_in_a_test_suite() -> None:
    """check_engine raises AssertionError with the whole card on a defect, and returns the card otherwise."""
    with pytest.raises(AssertionError, match="FAILED: 3 defects") as raised:
        check_engine(ManyBugs, examples=30)
    assert "the derivative of tanh in x" in str(raised.value)
    assert check_engine(EagerRules, examples=30).passed
    with pytest.raises(AssertionError, match=r"FAILED \(--strict\)"):
        check_engine(LectureValue, examples=30, strict=True)


def test_what_an_engine_writes_cannot_drive_the_terminal() -> None:
    """An exception message with terminal escapes is shown escaped in the card, never raw."""

    class Escapes(ToyValue):
        def tanh(self) -> ToyValue:
            raise RuntimeError("\x1b[2J\x1b[31mgotcha\x07")

    report = verify(MicrogradStyleEngine(Escapes), examples=20, seed_value=0)
    (broken,) = report.defects
    assert "\\x1b[2J\\x1b[31mgotcha\\x07" in broken.summary
    text = format_report(report)
    assert "\x1b" not in text
    assert "\x07" not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    """The progress line goes to a terminal's standard error, rewritten in place; a pipe or a log gets none."""
    for err, shown in ((_Terminal(), True), (io.StringIO(), False)):
        status = run_verify("refgrad", examples=20, seed=0, ops="mul", out=io.StringIO(), err=err, database=None)
        assert status == 0
        assert ("\r  20/20 graphs checked (" in err.getvalue()) is shown


def test_the_command_line_takes_strict_and_format(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`verify --strict --format json` parses, runs and prints one JSON object with strict set."""
    # The command line sets hypothesis's storage directory when unset: keep that out of this process.
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path))
    status = main(["verify", "--examples", "10", "--ops", "mul", "--no-database", "--strict", "--format", "json"])
    assert status == 0
    out = capsys.readouterr().out
    (line,) = out.splitlines()
    card = json.loads(line)
    assert card["strict"] is True
    assert card["verdict"] == "pass"
    assert card["checked"] == ["mul (x, y)", "mul (x, c)", "mul (c, x)"]


def test_a_factory_function_can_stand_for_the_class() -> None:
    """MODULE:NAME may name a function making leaves: its nodes' methods are found on what it returns."""
    engine = load_engine("_corpus:make_value")
    report = verify(engine, examples=50, seed_value=0)
    assert report.findings == ()
    assert report.forms_checked == report.forms_asked
    assert "from _corpus import make_value as Value" in engine.script(Program((1.0,), (Step("neg", (Ref(0),)),)))


def test_a_less_accurate_formula_is_a_warning_not_a_defect() -> None:
    """exp as math.e ** x: a few ulps off (more for large x), which is a warning about exp; --strict fails it."""
    report = verify(MicrogradStyleEngine(ExpByPower), examples=60, seed_value=0)
    assert report.passed, [finding.summary for finding in report.defects]
    assert any(finding.op == "exp" for finding in report.warnings)
    assert not verify(MicrogradStyleEngine(ExpByPower), examples=60, seed_value=0, strict=True, max_defects=1).passed


def test_the_reproduce_script_runs_from_any_folder(tmp_path: Path) -> None:
    """A defect's script puts the engine's folder on sys.path itself: run elsewhere, it prints both sides."""
    report = verify(MicrogradStyleEngine(ManyBugs), examples=10, seed_value=1, max_defects=1)
    script = report.defects[0].script
    assert script is not None
    (tmp_path / "repro.py").write_text(script, encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    shown = subprocess.run(
        [sys.executable, "repro.py"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False
    )
    assert shown.returncode == 0, shown.stderr
    engine_line, torch_line = shown.stdout.splitlines()
    assert engine_line.startswith("engine:")
    assert torch_line.startswith("torch:")


def test_against_the_exact_reference_alone_the_reproduce_script_needs_no_torch(tmp_path: Path) -> None:
    """--reference mpmath: the script compares with the exact reference, and runs where torch cannot be imported."""
    report = verify(MicrogradStyleEngine(ManyBugs), examples=10, seed_value=1, max_defects=1, references="mpmath")
    script = report.defects[0].script
    assert script is not None
    assert "import torch" not in script
    (tmp_path / "repro.py").write_text(script, encoding="utf-8")
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n", encoding="utf-8")
    paths = [str(tmp_path), *(p for p in sys.path if p)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    shown = subprocess.run(
        [sys.executable, "repro.py"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False
    )
    assert shown.returncode == 0, shown.stderr
    engine_line, exact_line = shown.stdout.splitlines()
    assert engine_line.startswith("engine:")
    assert exact_line.startswith("exact:")
    program = report.defects[0].program
    assert program is not None
    expected = exact_reference(program)
    assert (
        exact_line.split(None, 1)[1]
        == f"{expected.values[program.output]} {list(expected.gradients[: len(program.inputs)])}"
    )


def test_a_wrong_derivative_says_which_references_reject_it() -> None:
    """Both references say so, or one (the other accepting: check by hand), or one where the other could not go."""
    program = Program((0.5,), (Step("tanh", (Ref(0),)),))
    ops = frozenset({"tanh"})

    def sure(*checks: Check) -> str:
        return _how_sure(Outcome(program, checks, ()), 0)

    torch_rejects = Check("gradient", 0, ops, 10.0, "", 0.5378, 0.7864477329659274, reference="torch")
    exact_rejects = Check("gradient", 0, ops, 10.0, "", 0.5378, 0.7864477329659274, reference="mpmath")
    exact_accepts = Check("gradient", 0, ops, 0.5, "", 0.5378, 0.5378, reference="mpmath")
    fd_rejects = Check("finite-difference", 0, ops, 10.0, "", 0.5378, 0.786447733)
    fd_accepts = Check("finite-difference", 0, ops, 0.5, "", 0.5378, 0.5378)
    assert sure(torch_rejects, fd_rejects).startswith("torch (float64) and finite differences both say so")
    assert "to 4e-11 relative" in sure(torch_rejects, fd_rejects)
    assert sure(exact_rejects, fd_rejects).startswith("the exact reference (mpmath) and finite differences both say")
    assert sure(torch_rejects, exact_rejects, fd_rejects).startswith(
        "torch (float64), the exact reference (mpmath) and finite differences all say so"
    )
    assert sure(torch_rejects, fd_accepts) == (
        "only torch (float64) says so: finite differences accept the engine's number, so check this one by hand"
    )
    assert sure(exact_accepts, fd_rejects) == (
        "only finite differences say so: the exact reference (mpmath) accepts the engine's number, "
        "so check this one by hand"
    )
    assert sure(torch_rejects).startswith("torch (float64) alone says so")
    assert sure(fd_rejects).startswith("finite differences alone say so")


_ADD_MUL = ["add", "mul"]
# The accumulation diamond of add and mul at (0.75, 1.5): n2 = x0 + x1 = 2.25; n3 = n2 * x0; n4 = n3 + n2.
# One pass: d n4 / d x0 = n2 + (1 + x0) = 4.0, d n4 / d x1 = 1 + x0 = 1.75. A second micrograd-style pass
# starts from n3.grad = 1 and n2.grad = 1.75 left by the first: n3.grad 2, n2.grad 2.75 + 2 * 0.75 = 4.25,
# x0.grad 4 + 2 * 2.25 + 4.25 = 12.75, x1.grad 1.75 + 4.25 = 6.0 (torch's: 8.0 and 3.5).


def _accumulation(findings: Sequence[Finding]) -> list[str]:
    return [finding.summary for finding in findings if finding.kind is ACCUMULATION]


def test_micrograds_accumulation_is_two_warnings_with_the_numbers() -> None:
    """backward() twice and a node reused by a second graph, micrograd's way: warnings, the numbers worked out above."""
    report = verify(MicrogradStyleEngine(StaleGrads), examples=30, seed_value=2, ops=_ADD_MUL)
    assert report.passed
    twice, reused = _accumulation(report.warnings)
    assert twice.startswith(
        "backward() twice: the inputs' gradients are [12.75, 6.0], "
        "not twice one pass's [8.0, 3.5] (one pass: [4.0, 1.75])"
    )
    diamond = "program(x0=0.75, x1=1.5): n2 = x0 + x1; n3 = n2 * x0; n4 = n3 + n2"
    assert twice.endswith(f"on a diamond of add and mul ({diamond})")
    assert reused.startswith("backward() on a second graph built on a node of the first:")
    assert "the second program(x0=0.75, x1=1.5): n2 = x0 + x1; n3 = x0 * n2" in reused
    # Its zero_grad clears the whole graph: that one is checked and agrees.
    assert report.accumulation == ("twice", "a node reused by a second graph", "after zero_grad()")
    assert not verify(MicrogradStyleEngine(StaleGrads), examples=30, seed_value=2, ops=_ADD_MUL, strict=True).passed


def test_torchs_accumulation_passes_and_a_zero_grad_that_clears_too_little_is_a_warning() -> None:
    """The corpus's engine accumulates as torch does: nothing; its zero_grad() clearing only the output: one warning."""
    right = verify(MicrogradStyleEngine(ToyValue), examples=30, seed_value=2, ops=_ADD_MUL, strict=True)
    assert right.passed, [finding.summary for finding in right.findings]
    assert right.accumulation == ("twice", "a node reused by a second graph", "after zero_grad()")
    report = verify(MicrogradStyleEngine(ZeroGradSelfOnly), examples=30, seed_value=2, ops=_ADD_MUL)
    (cleared,) = _accumulation(report.warnings)
    assert cleared.startswith(
        "zero_grad() between two backward() calls: the inputs' gradients are [8.0, 3.5], not one pass's [4.0, 1.75]"
    )


def test_the_card_says_which_accumulation_checks_ran() -> None:
    """micrograd 0.1.0 (no zero_grad on a Value): two checks, two warnings; refgrad's engine returns its gradients."""
    report = verify(MicrogradStyleEngine(micrograd.engine.Value), examples=20, seed_value=0, ops=_ADD_MUL)
    assert report.accumulation == ("twice", "a node reused by a second graph")
    assert len(_accumulation(report.warnings)) == 2
    text = format_report(report)
    line = "backward() more than once, against torch's accumulation: twice, a node reused by a second graph; "
    assert line + "zero_grad(): the nodes have none" in text
    assert report.to_dict()["accumulation"] == ["twice", "a node reused by a second graph"]
    compat = verify(load_engine("micrograd-compat"), examples=20, seed_value=0, ops=_ADD_MUL, strict=True)
    assert compat.passed
    assert compat.accumulation == ("twice", "a node reused by a second graph")
    own = verify(RefgradEngine(), examples=20, seed_value=0, ops=_ADD_MUL)
    assert own.accumulation is None
    assert own.to_dict()["accumulation"] is None
    assert "backward() more than once" not in format_report(own)


def test_accumulation_runs_in_the_worker_as_in_process() -> None:
    """Through IsolatedEngine (a worker process) the same checks run and find the same numbers."""
    in_process = verify(MicrogradStyleEngine(StaleGrads), examples=20, seed_value=2, ops=_ADD_MUL)
    with IsolatedEngine("_toy_engine:StaleGrads") as engine:
        assert engine.keeps_gradients
        assert engine.has_zero_grad
        isolated = verify(engine, examples=20, seed_value=2, ops=_ADD_MUL)
    assert _accumulation(isolated.warnings) == _accumulation(in_process.warnings)
    assert isolated.accumulation == in_process.accumulation
    with IsolatedEngine("refgrad") as engine:
        assert not engine.keeps_gradients
        program = Program((1.0,), (Step("neg", (Ref(0),)),))
        with pytest.raises(ValueError, match="returns its gradients"):
            engine.accumulate(program, program, zero_grad=False)
