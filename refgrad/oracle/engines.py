"""Engine adapters: the same programs, run on any engine.

An :class:`Engine` runs a :class:`~refgrad.oracle.program.Program` and reports
every node's value and the output's gradient with respect to every node
(:class:`EngineRun`), or how it failed. Three adapters are provided:

* :class:`RefgradEngine`: refgrad's immutable ``Value`` and ``Value.backward()``;
* :class:`MicrogradStyleEngine`: any micrograd-style class ``V`` (``V(x)``
  makes a leaf; ``+ - * / **``, unary ``-``, numbers on either side and the
  methods ``relu``, ``exp``, ``log``, ``tanh``, ``sigmoid``, ``abs`` where the
  class has them build the graph; ``.data`` holds values; ``out.backward()``
  fills ``.grad``), including ``refgrad.micrograd.engine.Value``;
* whatever you write: anything with ``name``, ``strict``, ``run`` and ``script``.

Two capabilities are optional, each a protocol of its own that an engine
either implements or not: :class:`SecondOrderEngine` (``second_order``: the
Hessian of the output with respect to the inputs, by differentiating the
engine's own gradients) and :class:`ForwardModeEngine` (``forward_mode``: the
directional derivative along given tangents, without a backward pass).
:class:`RefgradEngine` has both; micrograd-style engines have neither, since
their gradients are floats that cannot be differentiated again.

A *strict* engine promises refgrad's contract: it signals a result outside the
finite reals by raising :class:`refgrad.DomainError`, never by returning NaN or
infinity. Other engines may signal it by raising ``ArithmeticError`` or
``ValueError`` or by producing a non-finite or complex number.
"""

from __future__ import annotations

import builtins
import inspect
import math
import numbers
import operator
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast, runtime_checkable

from refgrad.autodiff import grad, jvp
from refgrad.errors import DomainError
from refgrad.ops import OpSpec
from refgrad.ops.extra import import_user_module
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Form, Program, Ref, Step
from refgrad.oracle.references import script_reference
from refgrad.oracle.surface import SURFACE, builder, own_prelude
from refgrad.value import Value, apply

__all__ = [
    "ENGINE_NAMES",
    "MICROGRAD_ATTRIBUTES",
    "AccumulatingEngine",
    "Attributes",
    "Engine",
    "EngineFailure",
    "EngineRun",
    "EngineSpecError",
    "ForwardModeEngine",
    "ForwardModeRun",
    "MicrogradStyleEngine",
    "PlainConstants",
    "Probed",
    "RefgradEngine",
    "RunStarter",
    "SecondOrderEngine",
    "SecondOrderRun",
    "constants_are_plain",
    "load_engine",
    "probe",
    "probe_forms",
    "probe_program",
    "refuses",
    "second_order_refusal",
    "start_run",
]

ENGINE_NAMES: Final = ("refgrad", "micrograd-compat")
"""Engines known by name; anything else is ``MODULE:CLASS``."""


Stage = Literal["forward", "backward", "second order", "forward mode", "process"]
"""Where an engine failed: building the graph, differentiating it, differentiating its gradients, forward mode,
or (run in a worker) somewhere the dead or silent worker process cannot tell."""


@dataclass(frozen=True, slots=True)
class EngineFailure:
    """How an engine failed on a program.

    ``stage`` is ``"forward"`` (building node ``node``), ``"backward"``,
    ``"second order"`` (differentiating the gradients), ``"forward mode"``, or
    ``"process"``: an engine run in a worker process (see
    :mod:`refgrad.oracle.worker`) died or stopped answering, so where it was
    is known only from the message. ``domain_signal`` says whether this is the
    engine's way of reporting a result outside the finite reals (for a strict
    engine: a ``DomainError``).
    """

    stage: Stage
    node: int | None
    exception: str
    message: str
    domain_signal: bool

    def describe(self) -> str:
        """One line: what was raised, where."""
        if self.stage == "forward":
            where = "in the forward pass" if self.node is None else f"building node {self.node}"
        elif self.stage == "backward":
            where = "in backward"
        elif self.stage == "process":
            where = "in the engine's process"
        else:
            where = f"in {self.stage}"
        return f"{self.exception} {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class EngineRun:
    """Every node's value and d output / d node, or the failure that stopped the run.

    After a failure, ``values`` holds the nodes computed before it and
    ``gradients`` is empty. ``every_node=False``: the engine reported only the
    output's value and the inputs' gradients (an adapter without ``"nodes"``, see
    docs/protocol.md); the other entries are NaN placeholders, which the checks never read.
    """

    values: tuple[float, ...]
    gradients: tuple[float, ...]
    failure: EngineFailure | None
    every_node: bool = True


@runtime_checkable
class Engine(Protocol):
    """What the oracle needs of an engine."""

    @property
    def name(self) -> str:
        """How reports name the engine (``refgrad``, ``micrograd-compat``, ``module:Class``)."""
        ...

    @property
    def strict(self) -> bool:
        """Whether the engine signals out-of-domain results only by raising ``DomainError``."""
        ...

    def run(self, program: Program) -> EngineRun:
        """Build ``program``, differentiate its output, and report values and gradients of every node."""
        ...

    def script(self, program: Program) -> str:
        """A standalone script reproducing ``program`` on this engine and on torch."""
        ...


@dataclass(frozen=True, slots=True)
class SecondOrderRun:
    """``hessian[i][j]`` = d2 output / d input i d input j (row i: the gradient of d output / d input i), or a failure.

    After a failure ``hessian`` is empty.
    """

    hessian: tuple[tuple[float, ...], ...]
    failure: EngineFailure | None


@dataclass(frozen=True, slots=True)
class ForwardModeRun:
    """The directional derivative of the output along the tangents (forward mode), or the failure that stopped it."""

    directional: float
    failure: EngineFailure | None


@runtime_checkable
class SecondOrderEngine(Engine, Protocol):
    """An engine that can differentiate its own gradients (``python -m refgrad verify --order 2``)."""

    def second_order(self, program: Program) -> SecondOrderRun:
        """Build ``program``, differentiate the output, then differentiate each input's gradient again."""
        ...


@runtime_checkable
class ForwardModeEngine(Engine, Protocol):
    """An engine with forward mode: the directional derivative without a backward pass."""

    def forward_mode(self, program: Program, tangents: Sequence[float]) -> ForwardModeRun:
        """Build ``program`` and push ``tangents`` (one per input) forward to the output."""
        ...


@runtime_checkable
class AccumulatingEngine(Engine, Protocol):
    """An engine whose nodes keep their gradients (``.grad``) and whose backward adds to them: micrograd's style.

    torch's rule, which the oracle checks such engines against (warnings only: micrograd
    promises nothing here), is that each backward pass adds exactly its own gradients to
    the leaves: twice is twice one pass, and a second graph built on the first's nodes adds
    the second graph's gradients.
    """

    @property
    def keeps_gradients(self) -> bool:
        """Whether the nodes keep their gradients (false for an engine that returns them, like refgrad's)."""
        ...

    @property
    def has_zero_grad(self) -> bool:
        """Whether the nodes have a ``zero_grad()`` method."""
        ...

    def accumulate(self, first: Program, then: Program, *, zero_grad: bool) -> EngineRun:
        """Build ``first`` and call backward on its output (then ``zero_grad()`` on it, if asked); then
        build ``then`` on the same nodes (``then``'s inputs and leading steps that are ``first``'s are
        ``first``'s very nodes, the rest new) and call backward on its output: ``then``'s values and
        every one of its nodes' ``.grad`` as they read now.
        """
        ...


@runtime_checkable
class PlainConstants(Protocol):
    """An engine that may say whether it uses a program's constants as plain numbers, never differentiating them.

    A strict engine otherwise differentiates them as refgrad's do, and must refuse where a
    constant's gradient is not finite; one whose ``plain_constants`` is true need not (nor need
    it not). See :func:`constants_are_plain`.
    """

    @property
    def plain_constants(self) -> bool: ...


def constants_are_plain(engine: object) -> bool:
    """Whether ``engine`` says (:class:`PlainConstants`) it uses a program's constants as plain numbers."""
    return isinstance(engine, PlainConstants) and engine.plain_constants is True


@runtime_checkable
class _KnowsMissing(Protocol):
    """An engine that can say which ops it cannot express without running anything."""

    def missing(self, op: str) -> str | None: ...


class RunStarter(ABC):
    """An engine that can start a run and be collected later (one in a worker process, and its watcher).

    A base class, not a protocol: :func:`start_run` asks on every run, and a class check is
    answered from a cache where a protocol's walks its members each time (Python 3.11).
    """

    in_process_second_order: bool = False
    """Whether the engine behind it, run in this process instead, could be checked at order 2."""

    @abstractmethod
    def start(self, program: Program) -> Callable[[], EngineRun]:
        """Send ``program`` off; calling the result waits for its run."""


def second_order_refusal(engine: Engine) -> str | None:
    """Why ``engine`` cannot be checked at order 2, in one sentence; ``None`` if it can.

    Every place that asks (``verify``, ``check_program``, the command line) says the same.
    """
    if isinstance(engine, SecondOrderEngine):
        return None
    in_process = isinstance(engine, RunStarter) and engine.in_process_second_order
    why = "run in this process" if in_process else "its gradients are floats"
    return f"order 2 needs an engine that can differentiate its own gradients; {engine.name} cannot ({why})"


def start_run(engine: Engine, program: Program) -> Callable[[], EngineRun]:
    """Begin running ``program`` on ``engine``; calling the result gives the run.

    An engine in a worker process (with a ``start`` method) computes while the
    caller does something else, such as computing torch's reference; any other
    engine runs when the result is called.
    """
    if isinstance(engine, RunStarter):
        return engine.start(program)
    return lambda: engine.run(program)


class EngineSpecError(ValueError):
    """An ``--engine`` that does not name a usable engine."""


@dataclass(frozen=True, slots=True)
class _NotReal:
    """An engine's number that is not a real float: what it was, and whether it was complex."""

    description: str
    complex_number: bool


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number (not bool); None for complex and anything else."""
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


class RefgradEngine:
    """refgrad's core: immutable ``Value`` nodes, gradients from ``output.backward()``.

    Steps are built with Python operators and methods (the micrograd-style
    surface), so the run goes through ``Value``'s own dispatch. ``overrides``
    maps op names to replacement :class:`~refgrad.ops.OpSpec` s, built with
    :func:`refgrad.apply` instead: the oracle's self-tests use it to plant
    wrong derivative rules.
    """

    def __init__(self, overrides: Mapping[str, OpSpec] | None = None, *, name: str = "refgrad") -> None:
        """An adapter for refgrad's core, with optional replacement ops."""
        self._overrides = dict(overrides or {})
        for op, spec in self._overrides.items():
            if op not in op_table or not isinstance(spec, OpSpec):
                raise ValueError(f"overrides must map registry op names to OpSpec, got {op!r}: {spec!r}")
        self._name = name

    @property
    def name(self) -> str:
        """``refgrad`` unless renamed."""
        return self._name

    @property
    def strict(self) -> bool:
        """refgrad raises ``DomainError`` and never returns a non-finite number."""
        return True

    def _build(self, step: Step, operands: list[Value | float]) -> Value:
        override = self._overrides.get(step.op)
        spelling = SURFACE.get(step.op)
        if override is not None or spelling is None:
            return apply(override or op_table[step.op], *operands, params=step.params)
        built = builder(spelling)(*operands, *step.params)
        if not isinstance(built, Value):
            raise TypeError(f"{step.op} built a {type(built).__name__}, not a Value")
        return built

    def _build_all(self, program: Program) -> tuple[list[Value], EngineFailure | None]:
        """Every node of ``program`` as a ``Value``, or those built before the failure and the failure."""
        nodes = [Value(x) for x in program.inputs]
        for node, step in program.numbered_steps():
            operands: list[Value | float] = list(step.arguments(nodes))
            try:
                nodes.append(self._build(step, operands))
            except Exception as error:  # any exception is a finding; the oracle reports it
                return nodes, _failure("forward", node, error, isinstance(error, DomainError))
        return nodes, None

    def run(self, program: Program) -> EngineRun:
        """Build with ``Value``, differentiate with ``output.backward()``."""
        nodes, failure = self._build_all(program)
        values = tuple(n.data for n in nodes)
        if failure is not None:
            return EngineRun(values, (), failure)
        try:
            gradients = nodes[-1].backward()
        except Exception as error:  # as above
            return EngineRun(values, (), _failure("backward", None, error, isinstance(error, DomainError)))
        return EngineRun(values, tuple(gradients[n] for n in nodes), None)

    def second_order(self, program: Program) -> SecondOrderRun:
        """``grad(output, inputs, create_graph=True)``, then ``grad`` of each of those gradients."""
        nodes, failure = self._build_all(program)
        if failure is not None:
            return SecondOrderRun((), failure)
        inputs = nodes[: len(program.inputs)]
        try:
            first = grad(nodes[-1], inputs, create_graph=True)
            hessian = tuple(grad(gradient, inputs) for gradient in first)
        except Exception as error:  # any exception is a finding
            return SecondOrderRun((), _failure("second order", None, error, isinstance(error, DomainError)))
        return SecondOrderRun(hessian, None)

    def forward_mode(self, program: Program, tangents: Sequence[float]) -> ForwardModeRun:
        """``jvp(output, inputs, tangents)``."""
        nodes, failure = self._build_all(program)
        if failure is not None:
            return ForwardModeRun(math.nan, failure)
        try:
            directional = jvp(nodes[-1], nodes[: len(program.inputs)], tangents)
        except Exception as error:  # any exception is a finding
            return ForwardModeRun(math.nan, _failure("forward mode", None, error, isinstance(error, DomainError)))
        return ForwardModeRun(directional, None)

    def script(self, program: Program) -> str:
        """The script, using ``refgrad.Value`` and the gradients ``out.backward()`` returns."""
        own = [op for op in dict.fromkeys(step.op for step in program.steps) if op_table.is_extra(op)]
        engine_import = "from refgrad import Value"
        if own:
            engine_import = f"{engine_import}\n{own_prelude(op_table.origin)}"
        on_torch = all(op_table[op].torch is not None for op in own)
        # An op of one's own has no exact counterpart: its script compares with torch, or with nothing.
        reference = "torch" if own else script_reference()
        text = program.to_script(
            engine_import=engine_import, differentiate="gradients", on_torch=on_torch, reference=reference
        )
        if self._overrides:
            replaced = ", ".join(sorted(self._overrides))
            note = f"# note: the oracle ran this with replaced rules for {replaced}; the script uses the registry's"
            text = f"{note}\n{text}"
        return text


_FINDINGS: Final = (Exception, SystemExit)
"""What an engine may raise that the oracle reports as a finding: ``sys.exit`` in an engine is a bug too.

(``KeyboardInterrupt`` is not caught: it is the user stopping the run.)
"""


def _safe_repr(value: object) -> str:
    try:
        return f"{value!r:.60}"
    except Exception as error:  # a __repr__ that raises is the engine's bug; say so instead
        return f"<repr raised {type(error).__name__}>"


def _mutation(stage: Literal["forward", "backward"], node: int | None, message: str) -> EngineFailure:
    return EngineFailure(stage, node, "mutation", message[:300], False)


def _failure(stage: Stage, node: int | None, error: BaseException, signal: bool) -> EngineFailure:
    return EngineFailure(stage, node, type(error).__name__, _first_line(error)[:300], signal)


def _first_line(error: BaseException) -> str:
    """The first line of ``str(error)``, even if the engine's exception cannot be turned into text."""
    try:
        text = str(error)
    except Exception as failure:  # a broken __str__ in the engine's exception class
        return f"<str() of the exception raised {type(failure).__name__}>"
    return printable(text.splitlines()[0]) if text else ""


def printable(text: str) -> str:
    """``text`` with each control or non-printable character escaped (``\\x1b``): engine text drives no terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a micrograd-style engine calls things: the value's attribute, the gradient's, the backward method."""

    data: str = "data"
    grad: str = "grad"
    backward: str = "backward"

    def __post_init__(self) -> None:
        given: tuple[tuple[str, object], ...] = (
            ("--data", self.data),
            ("--grad", self.grad),
            ("--backward", self.backward),
        )
        for option, name in given:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{option} must name an attribute (a Python identifier), got {name!r:.60}")


MICROGRAD_ATTRIBUTES: Final = Attributes()
"""micrograd's names: ``.data``, ``.grad``, ``.backward()``."""


def _numbers_on(node: object) -> dict[str, float]:
    """The node's own attributes (instance dict and slots) that hold real numbers, by name."""
    names: list[str] = list(getattr(node, "__dict__", {}))
    for klass in type(node).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    found: dict[str, float] = {}
    for name in names:
        try:
            value = _real(getattr(node, name))
        except Exception:  # a property or slot that raises or is unset: not a candidate
            continue
        if value is not None:
            found[name] = value
    return found


def _suggest_attribute(node: object, expected: float, option: str) -> str:
    """``"; it has 'value' = 0.5: try --data value"``, or the numbers it does have, or nothing."""
    numbers = _numbers_on(node)
    matching = [name for name, value in numbers.items() if value == expected]
    if matching:
        return f"; it has {matching[0]!r} = {numbers[matching[0]]!r}: try {option} {matching[0]}"
    if numbers:
        shown = ", ".join(f"{name!r} = {value!r}" for name, value in list(numbers.items())[:4])
        return f"; its numbers are {shown}"
    return ""


def _suggest_method(cls: type) -> str:
    """``"; it has backprop(): try --backward backprop"`` for a likely backward method, or nothing."""
    likely = [
        name
        for name in dir(cls)
        if not name.startswith("__")
        and any(word in name.lower() for word in ("back", "prop", "grad", "diff"))
        and callable(getattr(cls, name, None))
    ]
    return f"; it has {likely[0]}(): try --backward {likely[0]}" if likely else ""


def _import_root(module_name: str) -> str | None:
    """The folder on ``sys.path`` that ``module_name`` was imported from (None if unknown, or not from a file)."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or module_name == "__main__":
        return None
    folder = os.path.dirname(os.path.abspath(file))
    depth = module_name.count(".") + (1 if os.path.basename(file) == "__init__.py" else 0)
    for _ in range(depth):
        folder = os.path.dirname(folder)
    return folder


def _node_type(make: Callable[[float], object]) -> object:
    """Where a leaf's methods live: the class itself, or the type of what a factory function returns."""
    if isinstance(make, type):
        return make
    try:
        return type(make(0.5))
    except Exception:  # the factory failing: undrivable() says what it raised
        return object


@dataclass(slots=True)
class _Built:
    """A micrograd-style graph being built: its nodes, each one's ``.data`` as read when it was made, the values."""

    nodes: list[object]
    seen: list[float]
    values: list[float]


_ZERO_GRAD: Final = operator.methodcaller("zero_grad")


def _shared_prefix(first: Program, then: Program) -> int:
    """How many of ``then``'s first nodes are ``first``'s (the same inputs, then the same leading steps)."""
    if then.inputs != first.inputs:
        return 0
    shared = len(first.inputs)
    for mine, theirs in zip(first.steps, then.steps, strict=False):
        if mine != theirs:
            break
        shared += 1
    return shared


class MicrogradStyleEngine:
    """Any micrograd-style class: ``V(x)`` leaves, operators and methods, ``.data``, ``.backward()``, ``.grad``.

    ``strict=True`` holds the class to refgrad's contract (``DomainError``,
    never a non-finite number); otherwise raising ``ArithmeticError`` or
    ``ValueError`` or producing a non-finite or complex number all count as
    the engine saying "not a finite real number".
    """

    def __init__(
        self,
        cls: Callable[[float], object],
        *,
        name: str | None = None,
        strict: bool = False,
        attributes: Attributes = MICROGRAD_ATTRIBUTES,
    ) -> None:
        """An adapter for ``cls``, reported as ``name`` (default ``module:Class``).

        ``cls`` is the node class, or a factory function making a leaf from a number (its
        methods are then looked up on the type of ``cls(0.5)``). ``attributes`` names where
        the nodes keep their value and gradient and what the backward method is called
        (default ``data``, ``grad``, ``backward``).
        """
        candidate: object = cls  # checked at run time too: callers need not be type-checked
        if not callable(candidate) or not hasattr(candidate, "__qualname__"):
            raise TypeError(f"a micrograd-style engine is a class or a function, got {type(cls).__name__}")
        if not isinstance(attributes, Attributes):
            raise TypeError(f"attributes must be an Attributes, got {type(attributes).__name__}")
        self._attributes = attributes
        self._cls = cls
        self._module: str = getattr(cls, "__module__", "__main__")
        self._class_name: str = getattr(cls, "__qualname__", "Value")
        self._name = name or f"{self._module}:{self._class_name}"
        self._strict = strict
        self._signals: tuple[type[Exception], ...] = (DomainError,) if strict else (ArithmeticError, ValueError)
        self._methods = _node_type(cls)
        # Ops the class writes through a builtin (abs(x) by __abs__) as it lacks their method.
        self._through_builtin: dict[str, Callable[[object], object]] = {
            op: getattr(builtins, spelling.builtin)
            for op, spelling in SURFACE.items()
            if spelling.builtin is not None
            and spelling.method is not None
            and not callable(getattr(self._methods, spelling.method, None))
            and callable(getattr(self._methods, f"__{spelling.builtin}__", None))
        }

    @property
    def name(self) -> str:
        """``module:Class`` unless named."""
        return self._name

    @property
    def strict(self) -> bool:
        """Whether the class promises refgrad's ``DomainError`` contract."""
        return self._strict

    def missing(self, op: str) -> str | None:
        """Why the class cannot express ``op`` at all (a missing method), or None."""
        spelling = SURFACE.get(op)
        if spelling is None:
            return f"no micrograd-style spelling for op {op!r}"
        if op in self._through_builtin or spelling.method is None:
            return None
        if not callable(getattr(self._methods, spelling.method, None)):
            if spelling.builtin is not None:
                return f"no {spelling.method} method and no __{spelling.builtin}__"
            return f"no method {spelling.method!r}"
        return None

    def _read(self, node: object, attribute: str) -> float | _NotReal:
        """The attribute as a float, or why it is not one (reading it may run the engine's code)."""
        if node is None:
            return _NotReal("None (the method returned nothing)", complex_number=False)
        try:
            if not hasattr(node, attribute):
                return _NotReal(f"a node without .{attribute}", complex_number=False)
            raw = getattr(node, attribute)
            value = _real(raw)
        except Exception as error:  # a property or __float__ that raises is the engine's bug, not ours
            return _NotReal(f"reading .{attribute} raised {type(error).__name__}: {_first_line(error)}", False)
        if value is None:
            return _NotReal(f".{attribute} = {_safe_repr(raw)} ({type(raw).__name__})", isinstance(raw, complex))
        return value

    def _changed(self, nodes: Sequence[object], seen: Sequence[float], which: Iterable[int]) -> str | None:
        """The first of the nodes ``which`` whose ``.data`` is no longer what was read when it was built."""
        for index in which:
            now = self._read(nodes[index], self._attributes.data)
            # The sign too: a reference must notice 0.0 turned into -0.0 in place.
            before = seen[index]
            if isinstance(now, _NotReal) or now != before or math.copysign(1.0, now) != math.copysign(1.0, before):
                shown = now.description if isinstance(now, _NotReal) else repr(now)
                return f"node {index}'s .data changed from {seen[index]!r} to {shown}"
        return None

    def run(self, program: Program) -> EngineRun:
        """Build with the class's operators and methods, then ``out.backward()`` and read ``.grad``.

        Besides wrong numbers, the run reports an engine that changes a node's
        ``.data`` after building it (in a later op or in backward), reads that
        fail, and ``sys.exit`` (``SystemExit``) called anywhere in the engine.
        """
        built = self._build(program, _Built([], [], []))
        if isinstance(built, EngineRun):
            return built
        return self._backward(built) or self._gradients(built)

    @property
    def keeps_gradients(self) -> bool:
        """Always: the nodes' ``.grad`` is where the gradients are read."""
        return True

    @property
    def has_zero_grad(self) -> bool:
        """Whether the node class has a ``zero_grad()`` method."""
        return callable(getattr(self._methods, "zero_grad", None))

    def accumulate(self, first: Program, then: Program, *, zero_grad: bool) -> EngineRun:
        """``first`` built and differentiated (and ``zero_grad()`` on its output, if asked), then ``then`` on its nodes.

        See :class:`AccumulatingEngine`. A failure anywhere is the run's failure.
        """
        built = self._build(first, _Built([], [], []))
        if isinstance(built, EngineRun):
            return built
        stopped = self._backward(built)
        if stopped is not None:
            return stopped
        if zero_grad:
            try:
                _ZERO_GRAD(built.nodes[-1])
            except _FINDINGS as error:
                return EngineRun(tuple(built.values), (), _failure("backward", None, error, False))
        shared = _shared_prefix(first, then)
        reused = _Built(built.nodes[:shared], built.seen[:shared], built.values[:shared])
        rebuilt = self._build(then, reused)
        if isinstance(rebuilt, EngineRun):
            return rebuilt
        return self._backward(rebuilt) or self._gradients(rebuilt)

    def _build(self, program: Program, built: _Built) -> _Built | EngineRun:
        """``program``'s nodes after those in ``built`` (its first nodes, already made), or the failure."""
        nodes, seen, values = built.nodes, built.seen, built.values  # seen: .data as read right after building
        for position in range(len(nodes), len(program.inputs)):
            try:
                nodes.append(self._cls(program.inputs[position]))
            except _FINDINGS as error:
                return EngineRun((), (), _failure("forward", position, error, False))
            leaf = self._read(nodes[-1], self._attributes.data)
            if isinstance(leaf, _NotReal) or not math.isfinite(leaf):
                return EngineRun((), (), self._bad_number("forward", position, leaf))
            seen.append(leaf)
            values.append(program.inputs[position])
        for index in range(len(nodes) - len(program.inputs), len(program.steps)):
            step = program.steps[index]
            node = len(program.inputs) + index
            operands = list(step.arguments(nodes))
            try:
                through = self._through_builtin.get(step.op)
                if through is not None:
                    made: object = through(operands[0])
                else:
                    made = builder(SURFACE[step.op])(*operands, *step.params)
            except _FINDINGS as error:
                return EngineRun(tuple(values), (), _failure("forward", node, error, isinstance(error, self._signals)))
            value = self._read(made, self._attributes.data)
            if isinstance(value, _NotReal) or not math.isfinite(value):
                return EngineRun(tuple(values), (), self._bad_number("forward", node, value))
            changed = self._changed(nodes, seen, (o.node for o in step.operands if isinstance(o, Ref)))
            if changed is not None:
                return EngineRun(tuple(values), (), _mutation("forward", node, changed))
            nodes.append(made)
            seen.append(value)
            values.append(value)
        changed = self._changed(nodes, seen, range(len(nodes)))
        if changed is not None:
            return EngineRun(tuple(values), (), _mutation("forward", None, changed))
        return built

    def _backward(self, built: _Built) -> EngineRun | None:
        """Call the backward method on the last node; the failure, if that fails or changes a node's ``.data``."""
        try:
            getattr(built.nodes[-1], self._attributes.backward)()
        except _FINDINGS as error:
            return EngineRun(
                tuple(built.values), (), _failure("backward", None, error, isinstance(error, self._signals))
            )
        changed = self._changed(built.nodes, built.seen, range(len(built.nodes)))
        if changed is not None:
            return EngineRun(tuple(built.values), (), _mutation("backward", None, changed))
        return None

    def _gradients(self, built: _Built) -> EngineRun:
        """Every node's ``.grad`` as it reads now."""
        gradients: list[float] = []
        for node in built.nodes:
            gradient = self._read(node, self._attributes.grad)
            if isinstance(gradient, _NotReal) or not math.isfinite(gradient):
                return EngineRun(tuple(built.values), (), self._bad_number("backward", None, gradient))
            gradients.append(gradient)
        return EngineRun(tuple(built.values), tuple(gradients), None)

    def _bad_number(
        self, stage: Literal["forward", "backward"], node: int | None, value: float | _NotReal
    ) -> EngineFailure:
        what = value.description if isinstance(value, _NotReal) else f"{value!r}"
        # A strict engine must raise; others may say "not a finite real" with the number itself.
        says_so = value.complex_number if isinstance(value, _NotReal) else True
        signal = not self._strict and says_so
        label = "not a number" if isinstance(value, _NotReal) and not value.complex_number else "non-finite result"
        return EngineFailure(stage, node, label, f"the engine produced {what} without raising", signal)

    def script(self, program: Program) -> str:
        """The script, importing the class as ``Value`` and differentiating with ``.backward()``.

        It puts the folder the engine's module was imported from first on ``sys.path``, so that
        it runs from any folder.
        """
        if "." in self._class_name:  # a nested class
            outer = self._class_name.split(".", 1)[0]
            engine_import = f"from {self._module} import {outer}\n\nValue = {self._class_name}"
        else:
            alias = "" if self._class_name == "Value" else " as Value"
            engine_import = f"from {self._module} import {self._class_name}{alias}"
        folder = _import_root(self._module)
        if folder is not None:
            engine_import = f"import sys\n\nsys.path.insert(0, {folder!r})  # the engine's folder\n{engine_import}"
        return program.to_script(
            engine_import=engine_import,
            differentiate="backward",
            abs_method=not self._through_builtin,
            data=self._attributes.data,
            grad=self._attributes.grad,
            backward=self._attributes.backward,
            reference=script_reference(),
        )

    def undrivable(self) -> str | None:
        """Why the class cannot be driven at all, in one line naming what is missing and what was found; or None.

        Asks ``Class(0.5)`` for its value and backward method, and, after
        calling it, for its gradient: ``"Value(0.5) has no attribute 'data';
        it has 'value' = 0.5: try --data value"``.
        """
        names = self._attributes
        label = f"{self._class_name}(0.5)"
        try:
            leaf = self._cls(0.5)
            has_data = hasattr(leaf, names.data)
            backward = getattr(leaf, names.backward, None)
        except Exception as error:  # the engine's own code failing: say what it raised
            return f"{label} raised {type(error).__name__}: {_first_line(error)}"
        if not has_data:
            return f"{label} has no attribute {names.data!r}" + _suggest_attribute(leaf, 0.5, "--data")
        if not callable(backward):
            return f"{label} has no method {names.backward!r}" + _suggest_method(type(leaf))
        try:
            backward()
            has_grad = hasattr(leaf, names.grad)
        except Exception:  # a leaf's backward may refuse; the run will say what it does on real graphs
            return None
        if not has_grad:
            return f"{label}.{names.backward}() leaves no attribute {names.grad!r}" + _suggest_attribute(
                leaf, 1.0, "--grad"
            )
        return None


def load_engine(spec: str, attributes: Attributes = MICROGRAD_ATTRIBUTES) -> Engine:
    """The engine named by ``spec``: ``refgrad``, ``micrograd-compat`` or ``MODULE:CLASS``.

    ``MODULE`` is imported with the current directory on the path; ``attributes``
    names the class's value, gradient and backward method.
    :class:`EngineSpecError` (one line) when that fails or the class cannot be
    driven (:meth:`MicrogradStyleEngine.undrivable`); ``TypeError`` if ``spec`` is not a str.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str (refgrad, micrograd-compat or MODULE:CLASS), got {type(spec).__name__}")
    if spec == "refgrad":
        return RefgradEngine()
    if spec == "micrograd-compat":
        from refgrad.micrograd.engine import Value as CompatValue

        return MicrogradStyleEngine(CompatValue, name="micrograd-compat", strict=True)
    module_name, colon, class_name = spec.partition(":")
    if not colon or not module_name or not class_name:
        raise EngineSpecError(f"unknown engine {spec!r}: use refgrad, micrograd-compat or MODULE:CLASS")
    try:
        module = import_user_module(module_name)
    except Exception as error:  # whatever importing user code raises is a usage error here
        raise EngineSpecError(f"cannot import module {module_name!r} for --engine {spec}: {error}") from None
    found: object = module
    for part in class_name.split("."):
        if not hasattr(found, part):
            raise EngineSpecError(f"module {module_name!r} has no attribute {class_name!r} (--engine {spec})")
        found = getattr(found, part)
    if not isinstance(found, type) and not inspect.isfunction(found):
        raise EngineSpecError(
            f"--engine {spec}: {class_name!r} is a {type(found).__name__}, not a class or a function making leaves"
        )
    if inspect.isfunction(found):
        try:
            inspect.signature(found).bind(0.5)
        except TypeError as error:
            raise EngineSpecError(
                f"--engine {spec}: {class_name}() cannot make a leaf from one number ({error})"
            ) from None
    engine = MicrogradStyleEngine(cast("Callable[[float], object]", found), name=spec, attributes=attributes)
    why = engine.undrivable()
    if why is not None:
        raise EngineSpecError(f"--engine {spec} cannot be driven: {why}")
    return engine


_PROBE_VALUES: Final = (1.5, 0.75, 2.0, 0.5, 3.0)
_PROBE_EXPONENTS: Final = (2.0, 3.0)


def probe_program(op: str, form: Form) -> Program:
    """A one-step in-domain program using ``op`` in ``form`` (on two inputs, so both operands are distinct)."""
    spec = op_table[op]
    for first in _PROBE_VALUES:
        for second in _PROBE_VALUES:
            for exponent in _PROBE_EXPONENTS:
                params = (exponent,) * len(spec.params)
                args = (first, second)[: spec.arity]
                if not spec.domain.contains(*args, *params):
                    continue
                operands = tuple(
                    Ref(position) if kind == "node" else Const(args[position]) for position, kind in enumerate(form)
                )
                # Nothing but the op itself: an engine lacking other ops is still probed fairly. Only
                # the inputs the step reads: a broken form's program is shown as it is.
                return Program((first, second), (Step(op, operands, params),)).pruned()
    raise ValueError(f"no probe point found for op {op!r}")


@dataclass(frozen=True, slots=True)
class Probed:
    """What probing found: forms the engine lacks, and forms it has that fail on an ordinary in-domain program."""

    unsupported: Mapping[tuple[str, Form], str]
    """Lacking, with the reason: no such method, Python's operator dispatch refusing the operand
    types, ``NotImplementedError``, or an assertion refusing the operands."""
    broken: Mapping[tuple[str, Form], tuple[EngineFailure, Program]]
    """Present but failing inside, with the failure and the one-step program that shows it: any
    other exception (``NameError``, ``RecursionError``, a ``TypeError`` from the method's own
    signature, ...), or a result that is not a number (``None`` returned, a node in ``.data``)."""


# Messages of the TypeError Python itself raises when no operator method accepts the operands.
_DISPATCH_REFUSALS: Final = ("unsupported operand type(s) for", "bad operand type for")


def refuses(failure: EngineFailure) -> bool:
    """Whether a failure on an in-domain probe is the engine declining the operands, rather than failing inside."""
    if failure.exception in ("NotImplementedError", "AssertionError"):
        return True
    return failure.exception == "TypeError" and failure.message.startswith(_DISPATCH_REFUSALS)


def probe_forms(engine: Engine, forms: Iterable[tuple[str, Form]]) -> Probed:
    """Which (op, form) pairs ``engine`` lacks, and which it has but cannot run on an ordinary point.

    Every engine is asked first for the ops it lacks, where it can say (an adapter's handshake
    lists its ops). A strict engine promises the others and is not run here; the rest are
    then run on a small in-domain
    program per pair (:func:`probe_program`). A domain signal there is left
    to the run's checks; changing a node in place, hanging or dying are
    findings of the run too: after the first hang or death, only the methods
    are asked for.
    """
    unsupported: dict[tuple[str, Form], str] = {}
    broken: dict[tuple[str, Form], tuple[EngineFailure, Program]] = {}
    missing = engine.missing if isinstance(engine, _KnowsMissing) else None
    running = not engine.strict
    for op, form in forms:
        reason = missing(op) if missing is not None else None
        if reason is None and running:
            program = probe_program(op, form)
            failure = engine.run(program).failure
            if failure is not None and failure.stage == "process":
                # A hang or a crash is not a missing op but a finding, for the run to report
                # (with a shrunk program); probing on would only meet it again, a timeout each.
                running = False
            elif failure is not None and not failure.domain_signal and failure.exception != "mutation":
                if refuses(failure):
                    reason = failure.describe()
                else:
                    broken[(op, form)] = (failure, program)
        if reason is not None:
            unsupported[(op, form)] = reason
    return Probed(unsupported, broken)


def probe(engine: Engine, forms: Iterable[tuple[str, Form]]) -> dict[tuple[str, Form], str]:
    """The (op, form) pairs ``engine`` lacks, each with the reason (see :func:`probe_forms`)."""
    return dict(probe_forms(engine, forms).unsupported)


def describe_form(op: str, form: Form) -> str:
    """``div (x, y)``, ``div (x, c)``, ``div (c, x)``: an op's operands as reports name them (a constant is ``c``)."""
    if len(form) == 1:
        return op
    names = iter(("x", "y"))
    return f"{op} ({', '.join(next(names) if kind == 'node' else 'c' for kind in form)})"


def unsupported_ops(unsupported: Mapping[tuple[str, Form], str], forms: Sequence[tuple[str, Form]]) -> list[str]:
    """Names of ops none of whose forms are supported."""
    by_op: dict[str, list[bool]] = {}
    for pair in forms:
        by_op.setdefault(pair[0], []).append(pair in unsupported)
    return [op for op, flags in by_op.items() if all(flags)]
