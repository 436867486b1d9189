"""The oracle's power: deliberately broken engines and rules are caught, with small counterexamples."""

from __future__ import annotations

import dataclasses

import pytest
from _toy_engine import NoAccumulation, ReluKink, ToyValue, WrongOrder, WrongTanh

from refgrad.ops import N, OpSpec, Params, registry
from refgrad.oracle import MicrogradStyleEngine, Ref, RefgradEngine, verify
from refgrad.oracle.findings import WRONG_DERIVATIVE

# Every planted bug must be found within this many graphs, and shrink to at most this many steps.
# (Shrunk programs are usually smaller still, see the ids below; but hypothesis also draws literals
# from the project's modules, so the path a shrink takes shifts as the code base grows.)
_BUDGET = 3000
_SMALL = 3


def _perturbed(spec: OpSpec, position: int, relative: float) -> OpSpec:
    """``spec`` with its ``position``-th partial derivative scaled by ``1 + relative``."""
    original = spec.partials

    def partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
        found = list(original(inputs, output, params))
        found[position] = found[position] * (1.0 + relative)
        return tuple(found)

    return dataclasses.replace(spec, partials=partials)


_RULES = [(spec.name, position) for spec in registry for position in range(spec.arity)]


@pytest.mark.parametrize(("op", "position"), _RULES, ids=[f"{op}-d{position}" for op, position in _RULES])
def test_a_relative_1e_6_error_in_any_rule_is_caught(op: str, position: int) -> None:
    """Scaling one partial derivative of one op by 1 + 1e-6 is caught, and shrinks to a few steps using that op."""
    engine = RefgradEngine({op: _perturbed(registry[op], position, 1e-6)}, name=f"perturbed {op}")
    report = verify(engine, examples=_BUDGET, seed_value=7, max_defects=1)
    assert report.failure is not None, f"a 1e-6 error in d{op}/d input {position} went unnoticed"
    assert [(finding.kind, finding.op) for finding in report.defects] == [(WRONG_DERIVATIVE, op)]
    program = report.failure.program
    assert op in program.ops()
    assert len(program.steps) <= _SMALL, str(program)


def test_the_unperturbed_adapter_passes() -> None:
    """The same adapter with the registry's own rules passes: the failures above are the perturbations'."""
    overrides = {spec.name: spec for spec in registry}
    report = verify(RefgradEngine(overrides), examples=300, seed_value=7)
    assert report.passed, report.failure


def test_the_correct_toy_engine_passes() -> None:
    """The toy engine without a planted bug passes, so the failures below are the bugs'."""
    report = verify(MicrogradStyleEngine(ToyValue), examples=1000, seed_value=8)
    assert report.passed, report.failure and report.failure.failures
    assert report.unsupported == {}


@pytest.mark.parametrize(
    ("engine", "op"),
    [
        (WrongTanh, "tanh"),  # typically tanh(x)
        (NoAccumulation, None),  # typically x + x: any node used twice
        (WrongOrder, None),  # typically a chain of two
        (ReluKink, "relu"),  # typically relu(0.0)
    ],
    ids=["wrong-derivative", "missing-accumulation", "wrong-order", "wrong-at-kink"],
)
def test_broken_engines_are_caught_with_small_counterexamples(engine: type, op: str | None) -> None:
    """Each planted bug is found and shrinks to a program of a few nodes showing it."""
    # relu'(0) = 1 is another convention at a kink: a warning, so it fails only a strict run.
    strict = engine is ReluKink
    report = verify(MicrogradStyleEngine(engine), examples=_BUDGET, seed_value=9, max_defects=1, strict=strict)
    assert report.failure is not None, f"{engine.__name__} went unnoticed"
    program = report.failure.program
    assert len(program.steps) <= _SMALL, str(program)
    assert program.node_count <= _SMALL + 2, str(program)
    if op is not None:
        assert op in program.ops()
    if engine is ReluKink:
        values = program.evaluate()
        relu_operands = [
            values[o.node] for s in program.steps if s.op == "relu" for o in s.operands if isinstance(o, Ref)
        ]
        assert 0.0 in relu_operands  # only the kink shows it
    if engine is NoAccumulation:
        assert any(len(users) > 1 for users in program.consumers())  # the bug needs a reused node
