"""The oracle on real engines: refgrad's core, refgrad.micrograd, micrograd 0.1.0, and adapters' edge cases."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from _toy_engine import ToyValue
from hypothesis import example, given

from refgrad import DomainError, Value, grad
from refgrad.oracle import (
    Const,
    EngineSpecError,
    Form,
    MicrogradStyleEngine,
    Program,
    Ref,
    RefgradEngine,
    Step,
    check_program,
    load_engine,
    probe,
    programs,
    verify,
)
from refgrad.oracle.checks import PARTIAL_OVERFLOW
from refgrad.oracle.engines import probe_program
from refgrad.oracle.strategies import all_forms


def _assert_passes(program: Program, engine_name: str) -> None:
    outcome = check_program(program, load_engine(engine_name))
    assert outcome.passed, [check.detail for check in outcome.failures]


@given(programs(out_of_domain="sometimes"))
# 1e-300 / (2 / x) at x = 8.8e9: torch's jvp of the division goes through a product near 1e-310
# (below the normal range) and divides it by 2e-10, 61 ulps off, beyond a tolerance that counted
# one spacing per edge.
@example(Program((8799649442.0,), (Step("div", (Const(2.0), Ref(0))), Step("div", (Const(1e-300), Ref(1))))))
def test_oracle_passes_on_refgrad(program: Program) -> None:
    """refgrad's core agrees with torch and finite differences on random programs (values, gradients, domains)."""
    _assert_passes(program, "refgrad")


@given(programs(out_of_domain="sometimes"))
def test_oracle_passes_on_micrograd_compat(program: Program) -> None:
    """refgrad.micrograd agrees with torch and finite differences on random programs."""
    _assert_passes(program, "micrograd-compat")


@given(programs(out_of_domain="sometimes"))
def test_oracle_passes_on_an_independent_engine(program: Program) -> None:
    """An engine written without refgrad (the tests' toy) passes too: the oracle is not tuned to refgrad."""
    outcome = check_program(program, MicrogradStyleEngine(ToyValue))
    assert outcome.passed, [check.detail for check in outcome.failures]


@given(programs(out_of_domain="always"))
def test_out_of_domain_torch_nonfinite_means_domain_error(program: Program) -> None:
    """Where torch's value is not finite, refgrad raises DomainError at that very node (and the check says so)."""
    engine = RefgradEngine()
    run = engine.run(program)
    assert run.failure is not None
    assert run.failure.exception == "DomainError"
    assert run.failure.stage == "forward"
    assert run.failure.node == program.output
    outcome = check_program(program, engine)
    assert outcome.passed
    assert [c.kind for c in outcome.checks] == ["domain"] or outcome.skips


@given(programs())
def test_in_domain_refgrad_raises_only_where_torch_is_not_finite(program: Program) -> None:
    """The other direction: refgrad raising DomainError means torch is not finite somewhere (or a named exception)."""
    outcome = check_program(program, RefgradEngine())
    run = RefgradEngine().run(program)
    if run.failure is not None:
        kinds = {c.kind for c in outcome.checks} | {s.kind for s in outcome.skips}
        assert kinds == {"domain"}
        assert outcome.passed


def test_silent_nan_from_a_strict_engine_is_caught() -> None:
    """A strict engine that returns NaN instead of raising DomainError fails the domain check."""

    class Silent(ToyValue):
        def log(self) -> ToyValue:
            return self._make(math.nan if self.data <= 0 else math.log(self.data), (self,), lambda: (1.0 / self.data,))

    program = Program((-1.0,), (Step("log", (Ref(0),)),))
    outcome = check_program(program, MicrogradStyleEngine(Silent, strict=True))
    assert not outcome.passed
    assert "without raising" in outcome.failures[0].detail
    # The same NaN from a non-strict engine is its way of saying "not finite".
    assert check_program(program, MicrogradStyleEngine(Silent)).passed


def test_raising_where_torch_is_finite_is_caught() -> None:
    """An engine that refuses a finite computation fails the domain check."""

    class Refuses(ToyValue):
        def exp(self) -> ToyValue:
            raise ValueError("exp refused")

    program = Program((1.0,), (Step("exp", (Ref(0),)),))
    outcome = check_program(program, MicrogradStyleEngine(Refuses))
    assert not outcome.passed
    assert "all finite" in outcome.failures[0].detail


def test_partial_overflow_is_reported_not_failed() -> None:
    # (With a zero cotangent, log(x) - log(x), any rounding of it makes torch's gradient infinite too:
    # that program is skipped as within rounding of an overflow instead.)
    """refgrad's partial 1/x overflows at x = 5e-324 where torch's gradient, 1e-300 / x, is finite: a named skip."""
    program = Program((5e-324,), (Step("log", (Ref(0),)), Step("mul", (Ref(1), Const(1e-300)))))
    outcome = check_program(program, RefgradEngine())
    assert outcome.passed
    assert [s.reason for s in outcome.skips] == [PARTIAL_OVERFLOW]
    assert outcome.checks == ()


def test_probe_program_is_in_domain() -> None:
    """Every (op, form) has an in-domain probe program that uses the op in that form."""
    for op, form in all_forms():
        program = probe_program(op, form)
        program.evaluate()
        assert (program.steps[0].op, program.steps[0].form) == (op, form)


def test_micrograd_0_1_0_unsupported_ops_are_left_out() -> None:
    """micrograd 0.1.0: probing finds the ops it lacks (as its source shows); runs leave them out, not fail on them."""
    engine = load_engine("micrograd.engine:Value")
    unsupported = probe(engine, all_forms())
    assert {op for op, _ in unsupported} == {"vpow", "exp", "log", "tanh", "sigmoid", "abs"}
    assert set(unsupported) >= {("vpow", ("node", "node")), ("vpow", ("const", "node"))}
    report = verify(engine, examples=150, seed_value=5)
    assert set(report.stats) == {"add", "sub", "mul", "div", "neg", "pow", "relu"}
    assert "exp" in report.unsupported
    assert "vpow (c, x)" in report.unsupported
    if report.failure is not None:
        assert report.failure.program.ops() <= set(report.stats)


@given(programs(ops=["add", "sub", "mul", "neg", "relu"], max_steps=10))
def test_micrograd_0_1_0_passes_where_it_is_sound(program: Program) -> None:
    """On add, sub, mul, neg and relu micrograd 0.1.0 agrees with both references (its pow and div do not)."""
    outcome = check_program(program, load_engine("micrograd.engine:Value"))
    assert outcome.passed, [c.detail for c in outcome.failures]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torch", "unknown engine"),
        ("no_such_module_xyz:Value", "cannot import module"),
        ("refgrad:NoSuchClass", "has no attribute"),
        # A function may make the leaves, but refgrad.grad needs its inputs: said in one line.
        ("refgrad:grad", r"grad\(\) cannot make a leaf from one number \(missing a required argument: 'inputs'\)"),
        ("refgrad:registry", "is a Registry, not a class or a function making leaves"),
        (":Value", "unknown engine"),
    ],
)
def test_bad_engine_specs(spec: str, message: str) -> None:
    """An unusable --engine is an EngineSpecError with one clear line."""
    with pytest.raises(EngineSpecError, match=message):
        load_engine(spec)


def test_engines_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MODULE:CLASS imports from the current directory; methods the class lacks are reported by name."""
    (tmp_path / "tiny_engine_for_oracle.py").write_text(
        "class V:\n"
        "    def __init__(self, data):\n"
        "        self.data, self.grad, self._back = data, 0.0, []\n"
        "    def __add__(self, other):\n"
        "        other = other if isinstance(other, V) else V(other)\n"
        "        out = V(self.data + other.data)\n"
        "        out._back = [self, other]\n"
        "        return out\n"
        "    def backward(self):\n"
        "        self.grad = 1.0\n"
        "        for child in self._back:\n"
        "            child.grad += 1.0\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    engine = load_engine("tiny_engine_for_oracle:V")
    assert isinstance(engine, MicrogradStyleEngine)
    unsupported = probe(engine, all_forms(["add", "mul", "exp"]))
    exp: tuple[str, Form] = ("exp", ("node",))
    assert unsupported[exp] == "no method 'exp'"
    assert ("add", ("node", "node")) not in unsupported
    assert ("mul", ("node", "node")) in unsupported
    monkeypatch.delitem(sys.modules, "tiny_engine_for_oracle")


def test_requested_gradients_do_not_fail_on_a_constant_partial() -> None:
    """Found by the oracle's analysis: grad(0.0 ** y, [y]) and grad(x ** c_node, [x]) for x < 0 are torch's.

    vpow's partial for the constant side does not exist there (infinite, or the log
    of a negative); refgrad used to raise DomainError while torch, asked only for the
    other gradient, returns it. backward(), which maps every node, still raises.
    """
    y = Value(0.5)
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert grad(0.0**y, [y]) == (torch.autograd.grad(0.0**t, [t])[0].item(),)
    x = Value(-2.0)
    s = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(s ** torch.tensor(3.0, dtype=torch.float64), [s])[0].item()
    assert grad(x ** Value(3.0), [x]) == (expected,)
    with pytest.raises(DomainError, match="vpow"):
        (0.0**y).backward()


def test_a_complex_result_is_a_domain_signal_for_micrograd_style_engines() -> None:
    """micrograd 0.1.0 computes (-8.0) ** 0.5 as a complex number: "not a finite real", as torch's NaN says."""
    program = Program((-8.0,), (Step("pow", (Ref(0),), (0.5,)),))
    engine = load_engine("micrograd.engine:Value")
    run = engine.run(program)
    assert run.failure is not None
    assert run.failure.domain_signal
    assert "complex" in run.failure.message
    outcome = check_program(program, engine)
    assert outcome.passed
    assert [check.kind for check in outcome.checks] == ["domain"]
