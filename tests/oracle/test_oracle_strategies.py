"""The generator: registry-driven, value-aware, every op and form drawn, edge cases included."""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from refgrad import DomainError
from refgrad.ops import registry
from refgrad.oracle import TORCH_REFERENCES, Program, Ref, all_forms, forms_of, programs
from refgrad.oracle.strategies import HEALTHY_MAGNITUDE, near_edges


def _sample(strategy: st.SearchStrategy[Program], count: int, seed_value: int = 0) -> list[Program]:
    """``count`` programs drawn the way a test would draw them (health checks on)."""
    drawn: list[Program] = []

    @settings(max_examples=count, database=None, phases=(Phase.generate,), suppress_health_check=())
    @seed(seed_value)
    @given(strategy)
    def collect(program: Program) -> None:
        drawn.append(program)

    collect()
    return drawn


@pytest.fixture(scope="module")
def sample() -> list[Program]:
    """A few hundred programs over the whole registry, some ending outside a domain."""
    return _sample(programs(out_of_domain="sometimes"), 400)


def test_every_op_has_one_torch_reference() -> None:
    """The torch table and the registry name exactly the same ops."""
    assert set(TORCH_REFERENCES) == set(registry.names)


def test_every_op_and_form_is_drawn(sample: list[Program]) -> None:
    """Registry completeness: every op, in every operand form (both pow forms and c ** y), appears."""
    drawn = {(step.op, step.form) for program in sample for step in program.steps}
    missing = set(all_forms()) - drawn
    assert not missing, f"never drawn: {sorted(missing)}"
    assert ("vpow", ("const", "node")) in drawn
    assert ("pow", ("node",)) in drawn


def test_in_domain_programs_evaluate() -> None:
    """With out_of_domain='never' every step is inside its op's domain."""
    for program in _sample(programs(), 300, seed_value=1):
        program.evaluate()


def test_out_of_domain_programs_fail_at_their_last_step() -> None:
    """With out_of_domain='always' the forward fails exactly at the last step, and only there."""
    for program in _sample(programs(out_of_domain="always"), 200, seed_value=2):
        *earlier, last = program.steps
        if earlier:
            Program(program.inputs, tuple(earlier)).evaluate()
        with pytest.raises(DomainError, match=last.op):
            program.evaluate()


def test_edge_inputs_are_drawn(sample: list[Program]) -> None:
    """Inputs include exact zeros of both signs, integers, tiny and huge magnitudes and subnormals."""
    inputs = [x for program in sample for x in program.inputs]
    assert any(x == 0.0 and math.copysign(1.0, x) > 0 for x in inputs)
    assert any(x == 0.0 and math.copysign(1.0, x) < 0 for x in inputs)
    assert sum(x.is_integer() and x != 0.0 for x in inputs) > 20
    assert any(0.0 < abs(x) < sys.float_info.min for x in inputs)
    assert any(0.0 < abs(x) <= 1e-8 for x in inputs)
    assert any(abs(x) >= 1e15 for x in inputs)


def test_near_edges_come_from_the_registry() -> None:
    """Points beside kinks and one-argument domain boundaries are found from the registry entries."""
    assert 0.0 in near_edges(registry["relu"])
    exp_edges = near_edges(registry["exp"])
    assert any(math.isfinite(math.exp(x)) for x in exp_edges)
    contains = registry["exp"].domain.contains
    assert any(x > 700 and contains(x) != contains(y) for x in exp_edges for y in exp_edges)
    assert near_edges(registry["tanh"]) == ()


def test_programs_have_size_depth_and_sharing(sample: list[Program]) -> None:
    """Programs reach ~40 steps and depth ~20, reuse nodes, square nodes (x * x) and put constants on both sides."""
    assert max(len(p.steps) for p in sample) >= 30
    assert max(p.depth() for p in sample) >= 15
    assert max(len(p.steps) for p in sample) <= 41  # 40, plus a final out-of-domain step
    assert any(any(len(users) >= 3 for users in p.consumers()) for p in sample)
    squares = [s for p in sample for s in p.steps if len(s.operands) == 2 and s.operands[0] == s.operands[1]]
    assert squares
    forms = Counter(step.form for p in sample for step in p.steps)
    assert forms[("const", "node")] > 0
    assert forms[("node", "const")] > 0


def test_magnitudes_stay_healthy_on_most_steps(sample: list[Program]) -> None:
    """Value-aware generation keeps most results inside the healthy band (edge steps may leave it)."""
    low, high = HEALTHY_MAGNITUDE
    healthy = total = 0
    for program in sample:
        try:
            values = program.evaluate()
        except DomainError:
            continue
        for value in values[len(program.inputs) :]:
            total += 1
            healthy += value == 0.0 or low <= abs(value) <= high
    assert healthy / total > 0.85


def test_restricted_ops_and_forms() -> None:
    """ops= and forms= restrict what is drawn; an op whose domain the inputs miss is still drawn."""
    for program in _sample(programs(ops=["log"]), 100, seed_value=3):
        assert program.ops() == {"log"}
    no_rpow = [pair for pair in all_forms() if pair != ("vpow", ("const", "node"))]
    for program in _sample(programs(forms=no_rpow), 100, seed_value=4):
        assert all(not (s.op == "vpow" and s.form == ("const", "node")) for s in program.steps)


@given(programs(max_steps=3, max_inputs=1))
def test_size_limits(program: Program) -> None:
    """max_steps and max_inputs bound the program."""
    assert len(program.steps) <= 3
    assert len(program.inputs) == 1
    assert all(isinstance(o, Ref) or math.isfinite(o.value) for s in program.steps for o in s.operands)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ops": ["nope"]}, "no op named"),
        ({"ops": []}, "at least one op"),
        ({"max_steps": 0}, "at least 1"),
        ({"forms": [("vpow", ("node", "const"))]}, "not an"),
        ({"out_of_domain": "often"}, "out_of_domain"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Bad strategy arguments are ValueErrors naming the problem."""
    with pytest.raises(ValueError, match=message):
        programs(**kwargs)  # type: ignore[arg-type]  # deliberately wrong arguments


def test_forms_follow_the_registry() -> None:
    """Unary ops take a node; binary ops take constants on either side except vpow's exponent."""
    for spec in registry:
        forms = forms_of(spec.name)
        assert all(len(form) == spec.arity for form in forms)
    assert forms_of("vpow") == (("node", "node"), ("const", "node"))
    assert forms_of("add") == (("node", "node"), ("node", "const"), ("const", "node"))
