"""Broken versus unsupported: an op the engine lacks is left out, an op it has that fails inside is a defect.

Each engine below is the toy engine with one or more methods written the way published engines
get them wrong; every broken method is reported in the same run, each with its one-step program.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Any, TypedDict

import pytest
from _toy_engine import ToyValue

from refgrad.oracle import MicrogradStyleEngine, Program, Ref, Step, load_engine, verify
from refgrad.oracle.command import run_verify
from refgrad.oracle.engines import Attributes, EngineSpecError, probe_forms
from refgrad.oracle.findings import BROKEN_OP, KINDS, LITTLE_CHECKED, WRONG_DERIVATIVE, FindingKind
from refgrad.oracle.report import format_report
from refgrad.oracle.strategies import all_forms


class ThreeBrokenMethods(ToyValue):
    """A relu without ``return out``, a tanh calling a name never imported, a __neg__ with an extra parameter."""

    def relu(self) -> Any:
        self._make(max(self.data, 0.0), (self,), lambda: (1.0 if self.data > 0 else 0.0,))

    def tanh(self) -> ToyValue:
        value = float(numpy_tanh(self.data))  # type: ignore[name-defined]  # noqa: F821  # pyright: ignore[reportUndefinedVariable]  # the planted NameError
        return self._make(value, (self,), lambda: (1.0 - value * value,))

    def __neg__(self, other: Any) -> ToyValue:  # type: ignore[override]  # noqa: PLE0302  # the planted extra parameter
        return self * -1.0


class RecursivePower(ToyValue):
    """__pow__ and __rpow__ handing a node exponent to each other until RecursionError."""

    def __pow__(self, exponent: Any) -> ToyValue:
        if isinstance(exponent, RecursivePower):
            return exponent.__rpow__(self)
        return super().__pow__(exponent)

    def __rpow__(self, base: Any) -> ToyValue:
        return base**self  # type: ignore[no-any-return]


class LacksMost:
    """Only add and mul (no reflections, no other methods): the other ops are absent, not broken."""

    def __init__(self, data: float, children: tuple[LacksMost, ...] = (), partials: tuple[float, ...] = ()) -> None:
        self.data = data
        self.grad = 0.0
        self._children = children
        self._partials = partials

    def __add__(self, other: Any) -> LacksMost:
        other = other if isinstance(other, LacksMost) else LacksMost(other)
        return LacksMost(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other: Any) -> LacksMost:
        other = other if isinstance(other, LacksMost) else LacksMost(other)
        return LacksMost(self.data * other.data, (self, other), (other.data, self.data))

    def backward(self) -> None:
        order: list[LacksMost] = []
        seen: set[int] = set()

        def visit(node: LacksMost) -> None:
            if id(node) not in seen:
                seen.add(id(node))
                for child in node._children:
                    visit(child)
                order.append(node)

        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            for child, partial in zip(node._children, node._partials, strict=True):
                child.grad += partial * node.grad


class AssertsFloatExponents(ToyValue):
    """micrograd's way of refusing a node exponent: an assertion on the operand's type (unsupported, not broken)."""

    def __pow__(self, exponent: Any) -> ToyValue:
        assert isinstance(exponent, int | float), "only supporting int/float powers for now"
        return super().__pow__(exponent)


def test_broken_methods_are_defects_and_all_are_reported_in_one_run() -> None:
    """relu returning None, tanh's NameError and __neg__'s extra parameter: three defects, nothing left out."""
    report = verify(MicrogradStyleEngine(ThreeBrokenMethods), examples=50, seed_value=1)
    assert not report.passed
    broken = {(finding.op, finding.form) for finding in report.defects if finding.kind is BROKEN_OP}
    # sub is built from neg in no form here, so only neg's own form is broken.
    assert broken == {("relu", "relu"), ("tanh", "tanh"), ("neg", "neg")}
    by_op = {finding.op: finding for finding in report.defects}
    assert "NameError" in by_op["tanh"].summary
    assert "numpy_tanh" in by_op["tanh"].summary
    assert "TypeError" in by_op["neg"].summary
    assert "the engine produced None (the method returned nothing)" in by_op["relu"].summary
    for finding in report.defects:
        assert finding.program is not None
        assert finding.op in finding.program.ops()
    assert {"relu", "tanh", "neg"}.isdisjoint(report.stats)  # not drawn: each is reported once, by its probe
    assert not any(what.startswith(("relu", "tanh", "neg")) for what in report.unsupported)
    text = format_report(report)
    assert "DEFECT [broken-op] tanh: NameError" in text
    assert "FAILED: 3 defects" in text


def test_mutual_recursion_is_broken_in_the_node_exponent_forms_only() -> None:
    """RecursionError from __pow__ and __rpow__: node ** node is broken; x ** 2.0 still works and is checked."""
    probed = probe_forms(MicrogradStyleEngine(RecursivePower), all_forms(["pow", "vpow"]))
    assert {op for op, _ in probed.broken} == {"vpow"}
    assert all(failure.exception == "RecursionError" for failure, _ in probed.broken.values())
    assert ("pow", ("node",)) not in probed.broken
    assert not probed.unsupported


def test_missing_methods_and_refusing_assertions_are_unsupported_not_defects() -> None:
    """Absent methods and micrograd's type assertion are left out; the run says how little it checked."""
    report = verify(MicrogradStyleEngine(LacksMost), examples=30, seed_value=2)
    assert report.passed, [finding.summary for finding in report.defects]
    assert set(report.stats) == {"add", "mul"}
    assert report.unsupported["sub (x, y)"].startswith("TypeError building node 2: unsupported operand type(s) for -")
    assert report.unsupported["exp"] == "no method 'exp'"
    assert report.forms_checked < report.forms_asked / 2
    (warning,) = [warning for warning in report.warnings if warning.kind is LITTLE_CHECKED]
    assert warning.summary == f"checked {report.forms_checked} of {report.forms_asked} op forms"
    text = format_report(report)
    assert f"op forms checked: {report.forms_checked} of {report.forms_asked}" in text
    assert "WARNING [little-checked]" in text
    asserting = probe_forms(MicrogradStyleEngine(AssertsFloatExponents), all_forms(["vpow"]))
    assert not asserting.broken
    assert any("AssertionError" in reason for reason in asserting.unsupported.values())


def test_a_correct_engine_has_no_findings() -> None:
    """The toy engine itself: every form checked, nothing found."""
    report = verify(MicrogradStyleEngine(ToyValue), examples=30, seed_value=3)
    assert report.passed
    assert report.findings == ()
    assert report.forms_checked == report.forms_asked == len(all_forms())


def test_a_disagreement_is_a_defect_finding_with_its_program() -> None:
    """The shrunk disagreement is a finding too, named by its op when it uses only one."""

    class WrongExp(ToyValue):
        def exp(self) -> ToyValue:
            value = math.exp(self.data)
            return self._make(value, (self,), lambda: (2.0 * value,))

    report = verify(MicrogradStyleEngine(WrongExp), examples=300, seed_value=4)
    (finding,) = report.defects
    assert finding.kind is WRONG_DERIVATIVE
    assert finding.op == "exp"
    assert report.failure is not None
    assert finding.program == report.failure.program
    assert len(report.failure.program.steps) == 1  # exp alone, found before any random program
    assert "d/dx is exp(x)" in finding.summary


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_every_kind_says_what_it_means_and_what_to_do(kind: FindingKind) -> None:
    """The catalogue: each kind under its own name, a severity, and a sentence each of meaning and advice."""
    assert KINDS[kind.name] is kind
    assert kind.severity in ("defect", "warning")
    assert kind.meaning[:1].islower()
    assert not kind.meaning.endswith(".")
    assert kind.advice[:1].islower()
    assert not kind.advice.endswith(".")


_OTHER_NAMES = '''
class Node:
    """A correct engine for add and mul that calls its number .value, its gradient .gradient, and backprop()."""

    def __init__(self, value, parents=(), partials=()):
        self.value, self.gradient, self.parents, self.partials = value, 0.0, parents, partials

    def __add__(self, other):
        other = other if isinstance(other, Node) else Node(other)
        return Node(self.value + other.value, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Node) else Node(other)
        return Node(self.value * other.value, (self, other), (other.value, self.value))

    def backprop(self):
        order, seen = [], set()

        def visit(node):
            if id(node) not in seen:
                seen.add(id(node))
                for parent in node.parents:
                    visit(parent)
                order.append(node)

        visit(self)
        self.gradient = 1.0
        for node in reversed(order):
            for parent, partial in zip(node.parents, node.partials):
                parent.gradient += partial * node.gradient
'''


class _Names(TypedDict):
    data: str
    grad: str
    backward: str


def _options(names: Attributes) -> _Names:
    return {"data": names.data, "grad": names.grad, "backward": names.backward}


@pytest.fixture
def other_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``other_names_engine`` with the class ``Node``, importable here and in a worker."""
    (tmp_path / "other_names_engine.py").write_text(_OTHER_NAMES, encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the worker imports from the same path
    monkeypatch.delitem(sys.modules, "other_names_engine", raising=False)
    return "other_names_engine:Node"


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (Attributes(), "Node(0.5) has no attribute 'data'; it has 'value' = 0.5: try --data value"),
        (Attributes(data="value"), "Node(0.5) has no method 'backward'; it has backprop(): try --backward backprop"),
        (
            Attributes(data="value", backward="backprop"),
            "Node(0.5).backprop() leaves no attribute 'grad'; it has 'gradient' = 1.0: try --grad gradient",
        ),
    ],
    ids=["data", "backward", "grad"],
)
def test_an_engine_that_cannot_be_driven_gets_one_line_naming_what_to_try(
    other_names: str, names: Attributes, said: str
) -> None:
    """Exit 2, nothing on stdout, one line on stderr saying what is missing, what was found, and the option."""
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(other_names, examples=5, seed=0, ops=None, out=out, err=err, database=None, **_options(names))
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue() == f"refgrad: error: --engine {other_names} cannot be driven: {said}\n"


def test_with_its_names_given_the_engine_is_checked_and_its_script_uses_them(other_names: str) -> None:
    """--data value --grad gradient --backward backprop: the run checks add and mul; the script says backprop()."""
    out, err = io.StringIO(), io.StringIO()
    names = Attributes(data="value", grad="gradient", backward="backprop")
    status = run_verify(
        other_names, examples=40, seed=0, ops="add,mul", out=out, err=err, database=None, **_options(names)
    )
    assert status == 0, out.getvalue() + err.getvalue()
    # Its backward is recursive, and accumulates as micrograd's does: right, with a warning on the deep
    # chain and two on calling backprop() more than once (through the names given).
    assert "PASSED with 3 warnings" in out.getvalue()
    assert "WARNING [deep-graph] a chain of 1200 add steps: RecursionError in backward" in out.getvalue()
    assert "WARNING [accumulation] backward() twice: the inputs' gradients are" in out.getvalue()
    assert "WARNING [accumulation] backward() on a second graph built on a node of the first:" in out.getvalue()
    engine = load_engine(other_names, names)
    script = engine.script(Program((2.0, 3.0), (Step("mul", (Ref(0), Ref(1))),)))
    assert "out.backprop()" in script
    assert "[x.gradient for x in xs]" in script
    assert "out.value" in script


def test_attribute_names_must_be_identifiers() -> None:
    """A name that is no attribute name is a ValueError naming the option."""
    with pytest.raises(ValueError, match="--grad must name an attribute"):
        Attributes(grad="grad()")


class _Slotted:
    """Its number in a slot named val, its gradient in g."""

    __slots__ = ("g", "val")

    def __init__(self, value: float) -> None:
        self.val = value
        self.g = 0.0

    def backward(self) -> None:
        self.g = 1.0


class _Doubled:
    """Keeps twice its number, and has no method that looks like a backward pass."""

    def __init__(self, value: float) -> None:
        self.twice = 2 * value


class _Empty:
    def __init__(self, value: float) -> None:
        del value


class _Refuses:
    def __init__(self, value: float) -> None:
        raise RuntimeError(f"no floats like {value} here")


class _LeafBackwardFails:
    """A leaf's backward raises: the diagnosis leaves that to the run, which sees real graphs."""

    def __init__(self, value: float) -> None:
        self.data, self.grad = value, 0.0

    def backward(self) -> None:
        raise RuntimeError("a leaf has nothing to differentiate")


@pytest.mark.parametrize(
    ("cls", "attributes", "said"),
    [
        (_Slotted, Attributes(), "_Slotted(0.5) has no attribute 'data'; it has 'val' = 0.5: try --data val"),
        (
            _Slotted,
            Attributes(data="val"),
            "_Slotted(0.5).backward() leaves no attribute 'grad'; it has 'g' = 1.0: try --grad g",
        ),
        (_Doubled, Attributes(), "_Doubled(0.5) has no attribute 'data'; its numbers are 'twice' = 1.0"),
        (_Doubled, Attributes(data="twice"), "_Doubled(0.5) has no method 'backward'"),
        (_Empty, Attributes(), "_Empty(0.5) has no attribute 'data'"),
        (_Refuses, Attributes(), "_Refuses(0.5) raised RuntimeError: no floats like 0.5 here"),
        (_LeafBackwardFails, Attributes(), None),
        (ToyValue, Attributes(), None),
    ],
    ids=["slot-data", "slot-grad", "numbers", "no-backward", "nothing", "raises", "leaf-backward", "toy"],
)
def test_the_diagnosis_says_what_is_missing_and_what_was_found(
    cls: type, attributes: Attributes, said: str | None
) -> None:
    """In this process: instance dicts and slots are read, a near miss is named, a raising class is quoted."""
    assert MicrogradStyleEngine(cls, attributes=attributes).undrivable() == said


def test_an_undrivable_class_is_refused_before_anything_runs(other_names: str) -> None:
    """load_engine and verify both refuse it with the one line (EngineSpecError, a ValueError)."""
    with pytest.raises(EngineSpecError, match=r"cannot be driven: Node\(0\.5\) has no attribute 'data'"):
        load_engine(other_names)
    with pytest.raises(EngineSpecError, match=r"try --data val$"):
        verify(MicrogradStyleEngine(_Slotted), examples=5)
    with pytest.raises(TypeError, match="attributes must be an Attributes"):
        MicrogradStyleEngine(ToyValue, attributes="data")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attribute names must be identifiers"):
        Program((1.0,), (Step("neg", (Ref(0),)),)).to_script(differentiate="backward", grad="grad()")


class _OnlyLeaves:
    """A drivable class with no op at all."""

    def __init__(self, value: float) -> None:
        self.data, self.grad = value, 0.0

    def backward(self) -> None:
        self.grad = 1.0


def test_an_engine_supporting_none_of_the_ops_asked_for_checks_nothing_and_says_so() -> None:
    """No graphs, every form left out, and the little-checked warning: 0 of 2 op forms."""
    report = verify(MicrogradStyleEngine(_OnlyLeaves), examples=5, ops=["add"])
    assert report.graphs == 0
    assert report.forms_checked == 0
    assert report.forms_asked == len(all_forms(["add"]))
    assert [finding.kind for finding in report.findings] == [LITTLE_CHECKED]
    assert report.passed
