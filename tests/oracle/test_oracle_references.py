"""The references: torch's conventions verified, the lanes' error model, finite differences, and the two compared."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from typing import cast

import pytest
import torch
from hypothesis import given

from refgrad.ops import OpSpec, registry
from refgrad.oracle import (
    TORCH_REFERENCES,
    Const,
    FiniteDifference,
    FiniteDifferenceSkip,
    Program,
    Ref,
    RefgradEngine,
    Step,
    check_program,
    finite_difference,
    programs,
    torch_reference,
)
from refgrad.oracle.checks import FD_USEFUL, KnownReferences
from refgrad.oracle.first_order import output_error_bound
from refgrad.oracle.higher_order import tangents_for
from refgrad.oracle.torch_reference import LANES, U, first_infinite_partial, torch_jvp


def _grads(function: Callable[..., torch.Tensor], *values: float) -> tuple[float, list[float]]:
    tensors = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    out = function(*tensors)
    torch.autograd.backward([out])
    return out.item(), [t.grad.item() if t.grad is not None else math.nan for t in tensors]


def _pow_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(x, 0.0)


# Torch's conventions, checked rather than assumed ------------------------------------------


def test_torch_pow_at_a_zero_base() -> None:
    """torch.pow(x, y) at x = 0: d/dy is 0 when y >= 0 (masked), d/dx is 0 when y == 0; poles are infinite."""
    assert _grads(torch.pow, 0.0, 0.0) == (1.0, [0.0, 0.0])
    assert _grads(torch.pow, 0.0, 2.0) == (0.0, [0.0, 0.0])
    assert _grads(torch.pow, 0.0, 1.0) == (0.0, [1.0, 0.0])
    value, (d_base, d_exponent) = _grads(torch.pow, 0.0, 0.5)
    assert (value, d_base, d_exponent) == (0.0, math.inf, 0.0)
    value, (d_base, d_exponent) = _grads(torch.pow, 0.0, -1.0)
    assert math.isinf(value)
    assert math.isinf(d_base)
    assert math.isinf(d_exponent)
    # A negative base with an integer exponent: finite value, NaN exponent derivative (log of a negative).
    value, (d_base, d_exponent) = _grads(torch.pow, -2.0, 3.0)
    assert (value, d_base) == (-8.0, 12.0)
    assert math.isnan(d_exponent)
    assert _grads(_pow_zero, 0.0) == (1.0, [0.0])
    assert _grads(_pow_zero, -2.0) == (1.0, [0.0])


def test_torch_kink_conventions() -> None:
    """relu'(0) = 0 and abs'(0) = 0 (both signs of zero), as the registry's kinks say."""
    assert _grads(torch.relu, 0.0) == (0.0, [0.0])
    assert _grads(torch.abs, 0.0) == (0.0, [0.0])
    assert _grads(torch.abs, -0.0)[1] == [0.0]
    assert "relu'(0) = 0" in registry["relu"].kinks[0].convention
    assert "abs'(0) = 0" in registry["abs"].kinks[0].convention


@pytest.mark.parametrize(
    ("op", "saved", "expected"),
    [("tanh", 0.5, 0.75), ("sigmoid", 0.5, 0.25), ("exp", 3.0, 3.0)],
)
def test_torch_backward_reads_the_saved_output(op: str, saved: float, expected: float) -> None:
    """tanh, sigmoid and exp differentiate from their saved output, so the error model can perturb it in place."""
    x = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    y = TORCH_REFERENCES[op].forward(x)
    y.data.fill_(saved)
    torch.autograd.backward([y], [torch.ones(1, dtype=torch.float64)])
    assert x.grad is not None
    assert x.grad.item() == pytest.approx(expected, rel=4 * U)


def test_torch_vpow_exponent_derivative_reads_the_saved_output() -> None:
    """d/dy x ** y is computed from the saved result: result * log(x)."""
    x = torch.tensor([2.0], dtype=torch.float64)
    y = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    out = torch.pow(x, y)
    out.data.fill_(10.0)
    torch.autograd.backward([out], [torch.ones(1, dtype=torch.float64)])
    assert y.grad is not None
    assert y.grad.item() == pytest.approx(10.0 * math.log(2.0), rel=4 * U)


# The lanes ------------------------------------------------------------------------------


def _plain_torch(program: Program) -> tuple[list[float], list[float]]:
    """Lane-shaped torch run with no perturbation: values and d output / d node for every node."""
    nodes: list[torch.Tensor] = []
    for value in program.inputs:
        nodes.append(torch.full((LANES,), value, dtype=torch.float64, requires_grad=True))
    for step in program.steps:
        operands = [
            nodes[o.node] if isinstance(o, Ref) else torch.full((LANES,), o.value, dtype=torch.float64)
            for o in step.operands
        ]
        result = TORCH_REFERENCES[step.op].forward(*operands, *step.params)
        result.retain_grad()
        nodes.append(result)
    torch.autograd.backward([nodes[-1]], [torch.ones(LANES, dtype=torch.float64)])
    gradients = [0.0 if t.grad is None else t.grad[0].item() for t in nodes]
    return [t[0].item() for t in nodes], gradients


@given(programs())
def test_lane_zero_is_plain_torch(program: Program) -> None:
    """Lane 0 carries no perturbation: its values are exactly torch's own, its gradients torch's within tolerance.

    Gradients may differ in the last bits only because the rounding sites change
    the order in which torch sums a reused node's contributions; that is a
    rounding difference the error model must cover, and does.
    """
    reference = torch_reference(program)
    values, gradients = _plain_torch(program)
    same = [a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(reference.values, values, strict=True)]
    assert all(same)
    if not reference.finite or reference.finiteness_ambiguous:
        return
    live = program.live()
    for node in range(program.node_count):
        if live[node]:
            difference = abs(reference.gradients[node] - gradients[node])
            assert difference <= reference.gradient_tolerances[node], node


def test_tolerance_is_tight_for_one_rounding() -> None:
    """One correctly rounded op: a tolerance of a few units of roundoff, far below a 1e-6 perturbation."""
    reference = torch_reference(Program((0.3, 0.7), (Step("mul", (Ref(0), Ref(1))),)))
    value = reference.values[2]
    assert 0.0 < reference.value_tolerances[2] <= 16 * U * abs(value)
    assert reference.value_tolerances[:2] == (0.0, 0.0)  # inputs are exact


def test_tolerance_follows_cancellation() -> None:
    """(x + 1e10) - 1e10 loses ten digits; the tolerance says so."""
    program = Program((0.3,), (Step("add", (Ref(0), Const(1e10))), Step("sub", (Ref(1), Const(1e10)))))
    reference = torch_reference(program)
    assert reference.value_tolerances[2] > 1e-7 * abs(reference.values[2])


def test_exact_zero_at_a_kink_is_not_ambiguous_but_a_rounded_one_is() -> None:
    """relu(x - x) sits exactly at the kink in every lane; relu(a*b - b*a) may not."""
    exact = Program((0.3,), (Step("sub", (Ref(0), Ref(0))), Step("relu", (Ref(1),))))
    assert torch_reference(exact).kink_ambiguous == ()
    rounded = Program(
        (0.1, 0.7),
        (
            Step("mul", (Ref(0), Ref(1))),
            Step("mul", (Ref(1), Ref(0))),
            Step("sub", (Ref(2), Ref(3))),
            Step("relu", (Ref(4),)),
        ),
    )
    assert torch_reference(rounded).kink_ambiguous == (5,)


def test_finiteness_is_read_from_every_node() -> None:
    """A non-finite gradient anywhere (here, sqrt at 0 behind a relu that masks it) makes torch's result non-finite."""
    program = Program((-1.0,), (Step("relu", (Ref(0),)), Step("pow", (Ref(1),), (0.5,))))
    reference = torch_reference(program)
    assert not reference.finite
    assert reference.first_non_finite_value is None
    assert reference.gradients[0] == 0.0  # torch's leaf gradient is finite: relu masked it


def test_first_infinite_partial() -> None:
    """log's partial 1/x overflows at a subnormal x even when torch's gradient through it is finite."""
    program = Program((5e-324,), (Step("log", (Ref(0),)), Step("sub", (Ref(1), Ref(1)))))
    reference = torch_reference(program)
    assert reference.finite
    assert first_infinite_partial(program) == 1
    assert first_infinite_partial(Program((2.0,), (Step("log", (Ref(0),)),))) is None


# Finite differences -------------------------------------------------------------------------


def test_finite_difference_of_a_cube() -> None:
    """d/dx x**3 at 2 is 12, to far better than the bound claims, and the bound is small."""
    program = Program((2.0,), (Step("pow", (Ref(0),), (3.0,)),))
    estimate = finite_difference(program, 0, 0.0)
    assert isinstance(estimate, FiniteDifference)
    assert abs(estimate.estimate - 12.0) <= estimate.error_bound
    assert estimate.error_bound < 1e-8


@pytest.mark.parametrize(
    ("program", "reason", "op"),
    [
        (Program((0.0,), (Step("relu", (Ref(0),)),)), "kink", "relu"),
        (Program((1e-12,), (Step("abs", (Ref(0),)),)), "kink", "abs"),
        (Program((1e-12,), (Step("log", (Ref(0),)),)), "domain boundary", "log"),
        (Program((1e-13,), (Step("div", (Const(1.0), Ref(0))),)), "domain boundary", "div"),
        # x**4 never changes sign, but a step of 6e-6 takes it from 1e-120 to 1e-21: a symmetric pole.
        (
            Program(
                (-1e-30,),
                (Step("mul", (Ref(0), Ref(0))), Step("mul", (Ref(1), Ref(1))), Step("pow", (Ref(2),), (-1.0,))),
            ),
            "kink",  # the registry lists pow's point 0 as a kink, and it is also a pole here
            "pow",
        ),
    ],
)
def test_finite_differences_skip_near_kinks_and_boundaries(program: Program, reason: str, op: str) -> None:
    """Within a (refined) step of a kink or a hole in a domain, the estimate is skipped and the op named."""
    estimate = finite_difference(program, 0, 0.0)
    assert isinstance(estimate, FiniteDifferenceSkip)
    assert (estimate.reason, estimate.op) == (reason, op)


def test_finite_differences_refine_the_step_near_a_kink() -> None:
    """relu at 1e-8: the first step crosses 0, a refined one does not, and the estimate is 1."""
    estimate = finite_difference(Program((1e-8,), (Step("relu", (Ref(0),)),)), 0, 0.0)
    assert isinstance(estimate, FiniteDifference)
    assert estimate.step < 1e-8
    assert abs(estimate.estimate - 1.0) <= estimate.error_bound < 1e-4


def _references_agree(program: Program) -> bool:
    """Torch's gradient and the finite-difference estimate agree wherever both are meaningful; True if compared."""
    reference = torch_reference(program)
    if not reference.finite or reference.finiteness_ambiguous or reference.kink_ambiguous:
        return False
    compared = False
    center = program.evaluate()
    for node in range(len(program.inputs)):
        if not program.live()[node]:
            continue
        estimate = finite_difference(program, node, output_error_bound(program, reference), center)
        if isinstance(estimate, FiniteDifferenceSkip):
            continue
        scale = max(
            abs(estimate.estimate), abs(reference.gradients[node]), abs(center[-1]) / max(1.0, abs(center[node]))
        )
        if not estimate.error_bound <= FD_USEFUL * scale:
            continue
        difference = abs(estimate.estimate - reference.gradients[node])
        assert difference <= 2 * estimate.error_bound + reference.gradient_tolerances[node], (node, estimate)
        compared = True
    return compared


@pytest.mark.parametrize("op", registry.names)
def test_references_agree_on_every_op(op: str) -> None:
    """For each op alone and in small compositions with itself, torch and finite differences agree."""
    compared = 0
    total = 0

    @given(programs(ops=[op], max_steps=4))
    def agree(program: Program) -> None:
        nonlocal compared, total
        total += 1
        compared += _references_agree(program)

    agree()
    # Not vacuous: most programs were actually compared (relu and abs sit at kinks more often).
    assert compared >= total // 4


@given(programs(max_steps=12))
def test_references_agree_on_compositions(program: Program) -> None:
    """Across ops, torch's gradients and finite differences agree wherever both apply."""
    _references_agree(program)


def _function_transform_jvp(program: Program, tangents: tuple[float, ...]) -> float:
    """The same directional derivative by torch.func.jvp, the function transform over the same formulas."""

    def function(*inputs: torch.Tensor) -> torch.Tensor:
        nodes = list(inputs)
        for step in program.steps:
            operands = [
                nodes[o.node] if isinstance(o, Ref) else torch.tensor(o.value, dtype=torch.float64)
                for o in step.operands
            ]
            nodes.append(TORCH_REFERENCES[step.op].forward(*operands, *step.params))
        return nodes[-1]

    primals = tuple(torch.tensor(x, dtype=torch.float64) for x in program.inputs)
    directions = tuple(torch.tensor(t, dtype=torch.float64) for t in tangents)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        found = cast("tuple[torch.Tensor, torch.Tensor]", torch.func.jvp(function, primals, directions))
    return float(found[1].item())


@given(programs(max_steps=12, out_of_domain="sometimes"))
def test_torchs_forward_mode_by_dual_tensors_is_torch_func_jvp_to_the_bit(program: Program) -> None:
    """torch_jvp carries tangents on dual tensors; torch.func.jvp gives the very same bits (NaN and -0.0 too)."""
    tangents = tangents_for(program)
    ours, theirs = torch_jvp(program, tangents), _function_transform_jvp(program, tangents)
    assert ours.hex() == theirs.hex() or (math.isnan(ours) and math.isnan(theirs))


def test_a_known_programs_forward_mode_reference_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """KnownReferences keeps torch's jvp: the structured programs, checked on engine after engine, compute it once."""
    program = Program((0.5, -1.25), (Step("mul", (Ref(0), Ref(1))), Step("tanh", (Ref(2),))))
    known = KnownReferences(torch_reference(program))
    first = check_program(program, RefgradEngine(), known=known)
    assert known.directional is not None
    assert known.directional[0] == torch_jvp(program, tangents_for(program))

    def not_again(program: Program, tangents: object) -> float:
        raise AssertionError("torch's jvp computed again for a known program")

    # (refgrad.oracle.torch_reference is the function there; the module is in sys.modules)
    monkeypatch.setattr(sys.modules["refgrad.oracle.torch_reference"], "torch_jvp", not_again)
    again = check_program(program, RefgradEngine(), known=known)
    assert [c.kind for c in again.checks] == [c.kind for c in first.checks]
    assert "forward-mode" in {c.kind for c in again.checks}


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_the_oracle_calls_the_torch_function_the_registry_names(spec: OpSpec) -> None:
    """TORCH_REFERENCES[op] computes exactly what the entry's named counterpart computes, to the bit."""
    assert spec.torch is not None
    named = getattr(torch, spec.torch.removeprefix("torch."))
    operands = [torch.tensor(x, dtype=torch.float64) for x in (0.75, -1.25)[: spec.arity]]
    if spec.name == "vpow":
        operands[1] = torch.tensor(3.0, dtype=torch.float64)  # a negative base needs an integer exponent
    params = (2.5,) * len(spec.params)
    ours = TORCH_REFERENCES[spec.name].forward(*operands, *params)
    assert float(ours.item()).hex() == float(named(*operands, *params).item()).hex()


def test_contributions_that_cancel_at_an_ill_conditioned_node_are_within_tolerance() -> None:
    """n / n at n = log(exp(1 / 3.6e14)): torch's gradient at n is one rounding of 1.6e14-sized terms, not 0.

    The lanes' enlarged errors move n itself (it is ill-conditioned), so only the running bound on
    each contribution covers torch's 0.03125 there; refgrad's exact 0 must pass, and a gradient
    off by more than that bound must not.
    """
    program = Program(
        (360359999999999.94,),
        (
            Step("div", (Const(1.0), Ref(0))),
            Step("exp", (Ref(1),)),
            Step("log", (Ref(2),)),
            Step("div", (Ref(3), Ref(3))),
            Step("tanh", (Ref(4),)),
        ),
    )
    reference = torch_reference(program)
    assert reference.gradients[3] != 0.0  # torch's rounding, which refgrad (exactly 0) does not make
    assert abs(reference.gradients[3]) <= reference.gradient_tolerances[3]
    assert reference.gradient_tolerances[3] < 1e-14 * 1.6e14 * 100  # a few roundings of the terms, no more
    outcome = check_program(program, RefgradEngine())
    assert outcome.passed, [failure.detail for failure in outcome.failures]


def test_a_partial_that_underflows_carries_its_spacing_back() -> None:
    """((x ** -3) ** 2) ** -3) ** -3 at x = 31229: the last partial underflows to 0, and torch's gradient with it.

    The true gradient is -3.4e-246 (finite differences find it): the last power's partial,
    ``-3 * y ** -4`` at ``y = 8e80``, is 1.5 subnormal spacings, which float64 rounds to 0, and
    the partials behind it multiply that lost spacing by 4.6e77. The tolerance carries it back,
    so an engine that rounds the same way (refgrad) is not a defect; an engine off by more, or
    at a normal-sized point, still is.
    """
    chain = Program(
        (31229.0,),
        (
            Step("pow", (Ref(0),), (-3.0,)),
            Step("pow", (Ref(1),), (2.0,)),
            Step("pow", (Ref(2),), (-3.0,)),
            Step("pow", (Ref(3),), (-3.0,)),
        ),
    )
    reference = torch_reference(chain)
    assert reference.gradients[0] == 0.0  # torch's float64 answer: the lost spacing
    assert reference.beyond_first_order == ()  # the partial rounded to -0.0 is a few spacings off, not nonlinear
    assert _references_agree(chain)  # finite differences' -3.4e-246 is within the tolerance now
    assert 3.4e-246 < reference.gradient_tolerances[0] < 1e-243  # the spacing carried back, and no more
    outcome = check_program(chain, RefgradEngine())
    assert outcome.passed, [failure.detail for failure in outcome.failures]
    # The absolute floor is that of ops whose partials can round below the normal range: relu's cannot.
    dead = torch_reference(Program((-1.0,), (Step("relu", (Ref(0),)), Step("mul", (Ref(1), Const(1e300))))))
    assert dead.gradient_tolerances[0] == 0.0
