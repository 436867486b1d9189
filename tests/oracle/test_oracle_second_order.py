"""The oracle's second-order and forward-mode checks: they pass on refgrad and catch engines wrong only there."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence

import pytest
from hypothesis import example, given

from refgrad import Value, hessian, nodes
from refgrad.ops import N, OpSpec, Params, primal, registry
from refgrad.oracle import (
    Const,
    ForwardModeEngine,
    ForwardModeRun,
    Program,
    Ref,
    RefgradEngine,
    SecondOrderEngine,
    Step,
    check_program,
    load_engine,
    programs,
    torch_reference,
    verify,
)
from refgrad.oracle.checks import (
    RECIPROCAL_OVERFLOW,
    SECOND_PARTIAL_OVERFLOW,
    UNRESOLVED_INPUT,
    ZERO_BASE_POWER,
    ZERO_EXPONENT_POWER,
)
from refgrad.oracle.command import run_verify
from refgrad.oracle.finite_differences import FiniteDifference, gradient_finite_differences
from refgrad.oracle.higher_order import tangents_for
from refgrad.oracle.report import format_report
from refgrad.oracle.torch_reference import directional_tolerance, torch_jvp

# Planted bugs must be found within this many graphs and shrink to at most this many steps.
_BUDGET = 1500
_SMALL = 3


@given(programs(out_of_domain="sometimes"))
# 1 ** 4.5e15 (relu's output to the power of a node): d/dbase overflows in some lanes, with both signs,
# and the forward-mode tolerance's sum of them raised ValueError (inf - inf) instead of skipping.
@example(
    Program(
        (0.5, 0.0, 0.5, 4513707043446134.0),
        (Step("exp", (Ref(1),)), Step("relu", (Ref(3),)), Step("vpow", (Ref(4), Ref(5)))),
    )
)
def test_second_order_and_forward_mode_pass_on_refgrad(program: Program) -> None:
    """refgrad's Hessians agree with torch's double backward and with differences of its gradients; its jvp too."""
    outcome = check_program(program, RefgradEngine(), order=2)
    assert outcome.passed, [check.detail for check in outcome.failures]


def test_refgrad_has_both_capabilities_and_micrograd_style_engines_neither() -> None:
    """The optional capabilities are protocols: refgrad's adapter has both, a micrograd-style adapter none."""
    refgrad_engine = load_engine("refgrad")
    compat = load_engine("micrograd-compat")
    assert isinstance(refgrad_engine, SecondOrderEngine)
    assert isinstance(refgrad_engine, ForwardModeEngine)
    assert not isinstance(compat, SecondOrderEngine)
    assert not isinstance(compat, ForwardModeEngine)


def test_every_kind_of_check_is_made() -> None:
    """On a smooth program of two inputs, each Hessian entry and the jvp are checked against both references."""
    program = Program(
        (0.5, -1.5), (Step("mul", (Ref(0), Ref(1))), Step("tanh", (Ref(2),)), Step("mul", (Ref(3), Ref(0))))
    )
    outcome = check_program(program, RefgradEngine(), order=2)
    assert outcome.passed
    kinds = [check.kind for check in outcome.checks]
    assert kinds.count("second-order") == 4
    assert kinds.count("second-order-fd") == 4
    assert kinds.count("forward-mode") == 1
    assert kinds.count("forward-vs-reverse") == 1
    assert outcome.skips == ()


def test_torch_hessian_and_jvp_agree_with_refgrad() -> None:
    """The references compute what refgrad's hessian and jvp do, on f = x * x * y + exp(y) * x."""
    program = Program(
        (1.0, 2.0),
        (
            Step("mul", (Ref(0), Ref(0))),
            Step("mul", (Ref(2), Ref(1))),
            Step("exp", (Ref(1),)),
            Step("mul", (Ref(4), Ref(0))),
            Step("add", (Ref(3), Ref(5))),
        ),
    )
    reference = torch_reference(program, second_order=True)
    x, y = Value(1.0), Value(2.0)
    expected = hessian(x * x * y + y.exp() * x, (x, y))
    for row, expected_row, tolerances in zip(reference.hessian, expected, reference.hessian_tolerances, strict=True):
        for got, want, tolerance in zip(row, expected_row, tolerances, strict=True):
            assert abs(got - want) <= tolerance
            assert tolerance < 1e-12 * max(1.0, abs(want))
    tangents = (0.5, -1.0)
    directional = torch_jvp(program, tangents)
    gx, gy = reference.gradients[0], reference.gradients[1]
    tolerance = directional_tolerance(reference, tangents)
    assert 0.0 < tolerance < 1e-13 * abs(directional)
    assert abs(directional - (0.5 * gx - 1.0 * gy)) <= tolerance


def test_second_order_finite_differences_of_a_cube() -> None:
    """Differences of the gradient 3 x**2 of x**3 at 2 estimate the second derivative 12."""
    program = Program((2.0,), (Step("pow", (Ref(0),), (3.0,)),))
    engine = RefgradEngine()

    def gradients_at(inputs: Sequence[float]) -> tuple[float, ...] | None:
        return engine.run(dataclasses.replace(program, inputs=tuple(inputs))).gradients[:1]

    (estimate,) = gradient_finite_differences(program, 0, gradients_at, (0.0,))
    assert isinstance(estimate, FiniteDifference)
    assert abs(estimate.estimate - 12.0) <= estimate.error_bound < 1e-8


def test_tangents_are_seeded_by_the_program() -> None:
    """The same program always gets the same tangents, of magnitude 0.5 to 1.5; another program others."""
    first = Program((0.5, 1.0), (Step("add", (Ref(0), Ref(1))),))
    second = Program((0.5, 2.0), (Step("add", (Ref(0), Ref(1))),))
    assert tangents_for(first) == tangents_for(first)
    assert tangents_for(first) != tangents_for(second)
    assert all(0.5 <= abs(t) <= 1.5 for t in tangents_for(first))


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        # 0 ** y for y > 0 is 0 nearby: refgrad's d/dy is the constant 0; torch's derivative of it NaN.
        (Program((0.5,), (Step("add", (Ref(0), Ref(0))), Step("vpow", (Const(0.0), Ref(1))))), ZERO_BASE_POWER),
        # x ** 0 at x = 1e-300: torch differentiates the discarded y * x ** (y - 1), whose x ** -2 overflows.
        (Program((1e-300, 0.0), (Step("vpow", (Ref(0), Ref(1))),)), ZERO_BASE_POWER),
        # relu(-x) ** 1.5 is 0 nearby; refgrad's partial 1.5 * t ** 0.5 has an infinite derivative at t = 0.
        (
            Program((0.5,), (Step("neg", (Ref(0),)), Step("relu", (Ref(1),)), Step("pow", (Ref(2),), (1.5,)))),
            SECOND_PARTIAL_OVERFLOW,
        ),
        # x0 ** exp(x1) at a subnormal x0: the partial x ** y * log(x) has a partial 1 / x, which overflows.
        (
            Program((2.2250738585e-313, 0.5), (Step("exp", (Ref(1),)), Step("vpow", (Ref(0), Ref(2))))),
            RECIPROCAL_OVERFLOW,
        ),
        # x1 ** -x0 at x0 = 0: d/dx1 is the constant 0 at a zero exponent (torch too), differences see x1 ** -1.
        (Program((0.0, 0.5), (Step("neg", (Ref(0),)), Step("vpow", (Ref(1), Ref(2))))), ZERO_EXPONENT_POWER),
        # tanh(x1 / x0) at x0 = 8e-125, x1 = 0: along x1 the output changes on a scale of 1e-125, finer than
        # every step; the gradient d/dx0 is 0 at every stencil point, so its differences "converge" to 0
        # while the true d2/dx0dx1 is -1 / x0**2 (torch agrees with the engine).
        (
            Program((8.439145337651073e-125, 0.0), (Step("div", (Ref(1), Ref(0))), Step("tanh", (Ref(2),)))),
            UNRESOLVED_INPUT,
        ),
    ],
    ids=[
        "zero-base",
        "zero-exponent-torch-nan",
        "second-partial-overflow",
        "reciprocal-overflow",
        "zero-exponent",
        "unresolved-input",
    ],
)
def test_known_differences_are_named_skips(program: Program, reason: str) -> None:
    """The documented second-order differences are counted under their own reason, not failed and not hidden."""
    outcome = check_program(program, RefgradEngine(), order=2)
    assert outcome.passed, [check.detail for check in outcome.failures]
    assert reason in [skip.reason for skip in outcome.skips]


# Planted bugs ----------------------------------------------------------------------------------------


def _floated(spec: OpSpec) -> OpSpec:
    """``spec`` whose partials are turned into floats: right at first order, blind to second order."""
    original = spec.partials

    def partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
        return tuple(primal(partial) for partial in original(inputs, output, params))

    return dataclasses.replace(spec, partials=partials)


def _relu_slope_at_kink(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    """relu's partial, except that at 0 it returns x itself: 0 as a number (right), but with derivative 1."""
    (x,) = inputs
    value = primal(x)
    return (1.0 if value > 0.0 else x if value == 0.0 else 0.0,)


_SECOND_ORDER_BUGS = {
    "mul-floated": ({"mul": _floated(registry["mul"])}, "mul"),
    "tanh-floated": ({"tanh": _floated(registry["tanh"])}, "tanh"),
    "div-floated": ({"div": _floated(registry["div"])}, "div"),
    "relu-kink": ({"relu": dataclasses.replace(registry["relu"], partials=_relu_slope_at_kink)}, "relu"),
}


@pytest.mark.parametrize("bug", list(_SECOND_ORDER_BUGS))
def test_first_order_right_second_order_wrong_is_caught(bug: str) -> None:
    """An engine whose first derivatives are right but whose rule is wrong at second order is caught, shrunk small."""
    overrides, op = _SECOND_ORDER_BUGS[bug]
    engine = RefgradEngine(overrides, name=bug)
    first = verify(engine, examples=200, seed_value=3)
    assert first.passed, first.failure and first.failure.failures  # the first derivatives are right
    # A second derivative other than torch's at relu's kink is a convention: it fails a strict run.
    report = verify(engine, examples=_BUDGET, seed_value=3, order=2, max_defects=1, strict=bug == "relu-kink")
    assert report.failure is not None, f"{bug} went unnoticed at second order"
    program = report.failure.program
    assert op in program.ops()
    assert len(program.steps) <= _SMALL, str(program)
    assert {check.kind for check in report.failure.failures} <= {"second-order", "second-order-fd"}
    if bug == "relu-kink":
        values = program.evaluate()
        relu_operands = [
            values[o.node] for s in program.steps if s.op == "relu" for o in s.operands if isinstance(o, Ref)
        ]
        assert 0.0 in relu_operands  # only the kink shows it


def test_a_kink_within_rounding_spoils_the_second_derivatives_upstream_of_it() -> None:
    """relu of ``0.1 * 3 - 0.3`` (5.6e-17, one rounding from its kink): the inputs before it get no Hessian check."""
    program = Program(
        (0.1, 3.0),
        (
            Step("mul", (Ref(0), Ref(1))),
            Step("sub", (Ref(2), Const(0.3))),
            Step("relu", (Ref(3),)),
            Step("mul", (Ref(4), Ref(0))),
        ),
    )
    outcome = check_program(program, RefgradEngine(), order=2)
    assert outcome.passed
    assert [(skip.reason, skip.node) for skip in outcome.skips if skip.kind == "second-order"] == [
        ("within rounding of a kink", 4)
    ]
    assert not [check for check in outcome.checks if check.kind == "second-order"]


def test_a_finite_second_derivative_where_torchs_is_infinite_fails_naming_both() -> None:
    """``x ** 1.5`` at 0 has an infinite second derivative: a floated pow's 0 there fails, a check without numbers."""
    engine = RefgradEngine({"pow": _floated(registry["pow"])}, name="floated pow")
    outcome = check_program(Program((0.0,), (Step("pow", (Ref(0),), (1.5,)),)), engine, order=2)
    (failure,) = outcome.failures
    assert failure.kind == "second-order"
    assert failure.detail == "d2 output / d x0 d x0: torch's is inf, the engine returned 0.0"
    assert (failure.got, failure.relative_error, failure.ulps) == (None, None, None)


def test_a_second_order_that_raises_something_else_than_domain_error_fails() -> None:
    """An exception other than DomainError while differentiating the gradients is a failure that names it."""
    tanh = registry["tanh"]

    def partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
        if not isinstance(inputs[0], float):
            raise RuntimeError("no second derivatives here")
        return tanh.partials(inputs, output, params)

    engine = RefgradEngine({"tanh": dataclasses.replace(tanh, partials=partials)}, name="raising tanh")
    outcome = check_program(Program((0.5,), (Step("tanh", (Ref(0),)),)), engine, order=2)
    (failure,) = outcome.failures
    assert failure.kind == "second-order"
    assert failure.detail == (
        "the engine failed with something other than DomainError: "
        "RuntimeError in second order: no second derivatives here"
    )


class _ForwardModeDroppingSecondOperand(RefgradEngine):
    """refgrad with a forward mode of its own that forgets the second operand's tangent."""

    def forward_mode(self, program: Program, tangents: Sequence[float]) -> ForwardModeRun:
        built = [Value(x) for x in program.inputs]
        for step in program.steps:
            operands: list[Value | float] = [built[o.node] if isinstance(o, Ref) else o.value for o in step.operands]
            built.append(self._build(step, operands))
        tangent = dict(zip(built[: len(program.inputs)], tangents, strict=True))
        for node in nodes(built[-1]):
            if node in tangent or node.op is None:
                continue
            partials = node.op.partials(tuple(inp.data for inp in node.inputs), node.data, node.params)
            first = node.inputs[0]
            tangent[node] = primal(partials[0]) * tangent.get(first, 0.0)
        return ForwardModeRun(tangent.get(built[-1], 0.0), None)


def test_a_broken_forward_mode_is_caught() -> None:
    """A forward mode that drops the second operand's tangent is caught against torch's forward mode and reverse."""
    report = verify(_ForwardModeDroppingSecondOperand(name="dropping"), examples=_BUDGET, seed_value=5, max_defects=1)
    assert report.failure is not None
    program = report.failure.program
    assert len(program.steps) <= _SMALL, str(program)
    assert {check.kind for check in report.failure.failures} == {"forward-mode", "forward-vs-reverse"}
    assert any(len(step.operands) == 2 for step in program.steps)


# The run and the command line --------------------------------------------------------------------------


def test_order_2_on_an_engine_without_second_order_is_a_usage_error() -> None:
    """--order 2 on micrograd-compat: exit 2 and one line naming the engine; from Python, a ValueError."""
    out, err = io.StringIO(), io.StringIO()
    status = run_verify("micrograd-compat", examples=10, seed=0, ops=None, order=2, out=out, err=err, database=None)
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1
    assert "--order 2 needs an engine that can differentiate its own gradients; micrograd-compat" in err.getvalue()
    # In a worker process refgrad's gradients are floats on the way back: no second order there either.
    isolated_out, isolated_err = io.StringIO(), io.StringIO()
    status = run_verify(
        "refgrad",
        examples=10,
        seed=0,
        ops=None,
        order=2,
        out=isolated_out,
        err=isolated_err,
        isolate=True,
        database=None,
    )
    assert status == 2
    assert isolated_err.getvalue().count("\n") == 1
    assert "cannot (run in this process)" in isolated_err.getvalue()
    with pytest.raises(ValueError, match="micrograd-compat cannot"):
        verify(load_engine("micrograd-compat"), examples=10, order=2)
    program = Program((1.0,), (Step("exp", (Ref(0),)),))
    with pytest.raises(ValueError, match="order 2 needs"):
        check_program(program, load_engine("micrograd-compat"), order=2)


def test_the_table_shows_what_was_checked() -> None:
    """Order 2 on refgrad fills the forward and second-order columns; micrograd-compat shows them as not checked."""
    second = verify(RefgradEngine(), examples=40, seed_value=1, order=2)
    assert second.passed
    text = format_report(second)
    header, *rows = text.split("\n\n")[1].splitlines()
    assert header.split()[7:11] == ["forward", "2nd", "order", "2nd"]
    columns = {row.split()[0]: row.split() for row in rows}
    assert sum(int(cells[7]) for cells in columns.values()) > 0
    assert sum(int(cells[8]) for cells in columns.values()) > 0
    assert "second order: " in text
    assert f"{second.checks['forward-mode']} against torch's forward mode" in text
    compat = verify(load_engine("micrograd-compat"), examples=20, seed_value=1)
    compat_text = format_report(compat)
    compat_rows = compat_text.split("\n\n")[1].splitlines()[1:]
    assert all(row.split()[7:10] == ["-", "-", "-"] for row in compat_rows)
    assert "forward mode: not checked (the engine has none)" in compat_text
    assert "forward-mode" not in compat.checks


def test_a_first_order_run_checks_forward_mode_but_not_second_order() -> None:
    """A plain run on refgrad makes forward-mode checks and no second-order ones; its columns say so."""
    report = verify(RefgradEngine(), examples=30, seed_value=2)
    assert report.checks.get("forward-mode", 0) > 0
    assert report.checks.get("forward-vs-reverse", 0) == report.checks["forward-mode"]
    assert "second-order" not in report.checks
    rows = format_report(report).split("\n\n")[1].splitlines()[1:]
    assert all(row.split()[8:10] == ["-", "-"] for row in rows)


def test_order_2_command_line_passes() -> None:
    """run_verify with order 2 on refgrad exits 0 and prints the second-order summary."""
    out, err = io.StringIO(), io.StringIO()
    status = run_verify("refgrad", examples=25, seed=0, ops="mul,tanh,vpow", order=2, out=out, err=err, database=None)
    assert status == 0, out.getvalue()
    assert "second order" in err.getvalue().splitlines()[0]
    assert "Hessian entries against torch" in out.getvalue()
    assert math.isfinite(float(out.getvalue().split(" graphs/s")[0].rsplit(", ", 1)[1]))
