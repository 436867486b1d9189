"""The exact reference (mpmath): independent of the registry's partials, exact, and tighter than torch's error model."""

from __future__ import annotations

import math
from typing import Any

import mpmath
import pytest
from _corpus import TANH_SLIP, TanhOff
from hypothesis import given, settings

import refgrad.oracle.program as program_module
from refgrad.ops import registry
from refgrad.oracle import Const, MicrogradStyleEngine, Program, Ref, RefgradEngine, Step, check_program, verify
from refgrad.oracle.exact_reference import EXACT_OPS, exact_reference, ulps_between
from refgrad.oracle.findings import ACCURACY
from refgrad.oracle.references import reference_argument, using_references
from refgrad.oracle.rounding import ROUNDING
from refgrad.oracle.strategies import programs
from refgrad.oracle.torch_reference import torch_reference


def test_every_registry_op_has_an_exact_counterpart_and_rounding_bounds() -> None:
    """One exact entry and one rounding entry per registry op, no more."""
    assert set(EXACT_OPS) == set(registry.names)
    assert set(ROUNDING) == set(registry.names)


def test_ulps_are_measured_against_the_exact_number_not_the_float_nearest_it() -> None:
    """One ulp above 1 is one ulp; half an ulp off an exact midpoint is half an ulp, not 0 or 1."""
    assert ulps_between(1.0 + 2.0**-52, mpmath.mpf(1)) == 1.0
    with mpmath.workprec(200):
        midpoint = mpmath.mpf(1) + mpmath.mpf(2) ** -53
    assert ulps_between(1.0, midpoint) == 0.5
    assert ulps_between(math.inf, mpmath.mpf(1)) == math.inf


def test_exact_values_and_gradients_are_exact_to_far_beyond_double_precision() -> None:
    """tanh(x * x) at 0.5: value tanh(0.25), d/dx = 2x * sech(0.25)**2, both to 1e-60 relative."""
    program = Program((0.5,), (Step("mul", (Ref(0), Ref(0))), Step("tanh", (Ref(1),))))
    result = exact_reference(program)
    with mpmath.workprec(256):
        value = mpmath.tanh(mpmath.mpf(0.25))
        slope = mpmath.mpf(1) * mpmath.sech(mpmath.mpf(0.25)) ** 2
        assert abs(result.exact_values[2] - value) < 1e-60
        assert abs(result.exact_gradients[0] - slope) < 1e-60


def test_a_wrong_registry_partial_does_not_move_the_exact_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact reference writes its derivatives afresh: doubling every registry partial the oracle reads changes
    nothing there (they are read only to ask whether a float formula overflows)."""
    program = Program((0.3,), (Step("tanh", (Ref(0),)), Step("exp", (Ref(1),))))
    before = exact_reference(program).exact_gradients[0]
    original = program_module.partials_at

    def doubled(*arguments: Any) -> list[float] | None:
        found = original(*arguments)
        return None if found is None else [2.0 * p for p in found]

    monkeypatch.setattr(program_module, "partials_at", doubled)
    read = program.local_partials([0.3, math.tanh(0.3), math.exp(math.tanh(0.3))], 0)
    assert read is not None
    assert read[0] == pytest.approx(2.0 * (1.0 - math.tanh(0.3) ** 2))  # the doubled partial is what the oracle reads
    assert exact_reference(program).exact_gradients[0] == before


@settings(max_examples=150, deadline=None)
@given(programs(max_steps=10, out_of_domain="never"))
def test_torch_agrees_with_the_exact_reference_within_its_own_tolerance(program: Program) -> None:
    """torch float64 is within the torch error model's tolerance of the exact value, wherever both are finite."""
    torch, exact = torch_reference(program), exact_reference(program)
    if not (torch.finite and exact.finite) or torch.finiteness_ambiguous or exact.finiteness_ambiguous:
        return
    for node in range(len(program.inputs), program.node_count):
        if node in exact.beyond_first_order or node in torch.beyond_first_order:
            continue
        tolerance = torch.value_tolerances[node]
        if math.isfinite(tolerance):
            assert abs(torch.values[node] - exact.values[node]) <= tolerance + math.ulp(exact.values[node])


def test_refgrad_agrees_with_the_exact_reference_on_a_known_program() -> None:
    """Every value and gradient of refgrad's engine is within the exact reference's bound, in ulps as well."""
    program = Program((0.7, -1.3), (Step("mul", (Ref(0), Ref(1))), Step("sigmoid", (Ref(2),)), Step("log", (Ref(3),))))
    with using_references("mpmath"):
        outcome = check_program(program, RefgradEngine())
    exact = [check for check in outcome.checks if check.reference == "mpmath" and check.kind in {"value", "gradient"}]
    assert exact
    assert outcome.passed
    assert all(check.exact_ulps is not None and check.exact_ulps < 8 for check in exact)


def test_a_tanh_derivative_off_by_2e_15_fails_only_against_the_exact_reference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """The issue's case: torch's error model passes it under --strict, the exact reference names tanh (accuracy)."""
    engine = MicrogradStyleEngine(TanhOff)
    assert TANH_SLIP == 2e-15
    with_torch = verify(engine, examples=100, seed_value=0, strict=True, references="torch")
    assert with_torch.passed, [finding.summary for finding in with_torch.findings]
    exact = verify(engine, examples=100, seed_value=0, strict=True, references="mpmath")
    assert not exact.passed
    named = {(finding.kind, finding.op) for finding in exact.findings}
    assert (ACCURACY, "tanh") in named
    assert all(finding.op in {"tanh", "vpow"} for finding in exact.findings), [f.summary for f in exact.findings]
    assert exact.references == "mpmath"
    assert exact.checks_by_reference.get("mpmath", 0) > 0
    assert "torch" not in exact.checks_by_reference


def test_forward_mode_through_a_subnormal_tangent_is_no_false_alarm() -> None:
    """A tangent of 1e-322 rounds absolutely: its spacing, amplified by a 3e11 partial, is in the bound, no more.

    ``log(log(x) ** -4)`` at the largest float: refgrad's jvp is 2% from the exact one, one
    subnormal spacing at ``n2`` times ``d output / d n2``; reverse mode never leaves the normal range there.
    """
    program = Program.from_json(
        '{"inputs": [1.7976931348623157e+308], "steps": [{"op": "log", "operands": [{"node": 0}], "params": []},'
        ' {"op": "pow", "operands": [{"node": 1}], "params": [-4.0]},'
        ' {"op": "log", "operands": [{"node": 2}], "params": []}]}'
    )
    with using_references("mpmath"):
        outcome = check_program(program, RefgradEngine())
    kinds = {check.kind for check in outcome.checks}
    assert {"forward-mode", "forward-vs-reverse"} <= kinds
    assert outcome.passed, [check.detail for check in outcome.checks if check.ratio > 1.0]
    exact = exact_reference(program)
    expected, tolerance = exact.directional(program, (1.0,))
    assert 0.0 < abs(expected) < 1e-310
    # one spacing at n2 amplified by 1 / n2 is 6e-313; the bound allows a few, not the whole jvp
    assert 6e-313 < tolerance < 0.5 * abs(expected)


def test_the_exact_numbers_own_rounding_to_a_float_is_in_the_tolerance() -> None:
    """The engine is compared with the float nearest the exact value: half an ulp more, and no more than that.

    Here the exact output is near the midpoint of two floats, refgrad's result is the other one: 1 ulp from
    the rounded exact value, within the first-order bound of the exact value itself.
    """
    program = Program(
        (1e100, 8.254730689005896),
        (
            Step("add", (Ref(0), Const(-0.5))),
            Step("sigmoid", (Ref(2),)),
            Step("relu", (Ref(1),)),
            Step("sub", (Ref(3), Ref(4))),
            Step("sigmoid", (Ref(5),)),
            Step("mul", (Const(10.0), Ref(6))),
            Step("sub", (Ref(7), Const(-0.5))),
        ),
    )
    with using_references("mpmath"):
        outcome = check_program(program, RefgradEngine())
    value = next(
        c for c in outcome.checks if c.kind == "value" and c.node == program.output and c.reference == "mpmath"
    )
    assert value.got is not None
    assert value.expected is not None
    assert abs(value.got - value.expected) == math.ulp(value.expected)
    assert outcome.passed, [check.detail for check in outcome.checks if check.ratio > 1.0]
    exact = exact_reference(program)
    tolerance = exact.value_tolerances[program.output]
    assert math.ulp(value.expected) <= tolerance < 2 * math.ulp(value.expected)


def test_refgrad_passes_strict_against_the_exact_reference() -> None:
    """refgrad's own engine: no defect and no warning against the exact reference under --strict."""
    report = verify(RefgradEngine(), examples=500, seed_value=0, strict=True, references="mpmath")
    assert report.passed, [finding.summary for finding in report.findings]
    assert report.stats["tanh"].gradient_ulps is not None


def test_reference_choices_are_checked() -> None:
    """A non-str is a TypeError, an unknown choice a ValueError naming the choices; order 2 needs torch."""
    with pytest.raises(TypeError, match="references must be a str"):
        reference_argument(1)
    with pytest.raises(ValueError, match="torch, mpmath, both"):
        reference_argument("exact")
    with pytest.raises(ValueError, match="checked against torch"):
        verify(RefgradEngine(), examples=1, order=2, references="mpmath")


def test_a_function_of_an_exact_sum_with_more_bits_than_the_working_precision_is_right() -> None:
    """log(2 ** -2 + 3e-201): the sum is exact at 717 bits; mpmath's log of it at 256 bits gave 1.2e-200."""
    program = Program.from_json(
        '{"inputs": [-2.0], "steps": ['
        '{"op": "vpow", "operands": [{"const": 2.0}, {"node": 0}], "params": []}, '
        '{"op": "sub", "operands": [{"node": 1}, {"const": -2.967633236524467e-201}], "params": []}, '
        '{"op": "log", "operands": [{"node": 2}], "params": []}]}'
    )
    exact = exact_reference(program)
    assert exact.values[-1] == math.log(0.25)
    assert exact.gradients[0] == pytest.approx(math.log(2.0) * 0.25 / 0.25, rel=1e-15)
    with using_references("mpmath"):
        assert check_program(program, RefgradEngine()).passed


def test_an_overflow_through_a_node_that_is_all_rounding_is_rounding_s_to_decide() -> None:
    """log(2 ** -8.5e-33) is -5.9e-33 exactly and 0 in floats: its gradient through / 8e-256 overflows only exactly."""
    program = Program.from_json(
        '{"inputs": [-8.077207215876043e-256, 2.0], "steps": ['
        '{"op": "pow", "operands": [{"node": 1}], "params": [-8.549037505402383e-33]}, '
        '{"op": "log", "operands": [{"node": 2}], "params": []}, '
        '{"op": "div", "operands": [{"node": 3}, {"node": 0}], "params": []}]}'
    )
    # The same, dividing by a constant: d output / d constant overflows (found by verify at seed 0).
    by_constant = Program.from_json(
        '{"inputs": [2.0], "steps": ['
        '{"op": "pow", "operands": [{"node": 0}], "params": [-8.549037505402383e-33]}, '
        '{"op": "log", "operands": [{"node": 1}], "params": []}, '
        '{"op": "div", "operands": [{"node": 2}, {"const": -8.077207215876043e-256}], "params": []}]}'
    )
    for each, finite_nodes in ((program, False), (by_constant, True)):
        exact = exact_reference(each)
        assert exact.nodes_finite is finite_nodes
        assert not exact.finite
        assert exact.finiteness_ambiguous
        with using_references("mpmath"):
            outcome = check_program(each, RefgradEngine())
        assert outcome.passed
        assert any(skip.kind == "domain" for skip in outcome.skips)
