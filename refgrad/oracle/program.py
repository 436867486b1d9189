"""Programs: expression graphs as plain, typed, frozen data.

A :class:`Program` is what the oracle draws, checks, shrinks and prints. It
holds concrete input values and a sequence of :class:`Step` s; each step
applies one registry op to earlier nodes (:class:`Ref`) or to numbers written
into the program (:class:`Const`). Nodes are numbered in creation order: the
inputs first (``0 .. len(inputs) - 1``), then one node per step; the last step
is the output. A node may feed any number of later steps, and both operands of
one step (``x * x``).

Programs compare by value, serialize to JSON (:meth:`Program.to_json`,
:meth:`Program.from_json`) and print as a short standalone Python script that
runs the same computation on an engine and on PyTorch (:meth:`Program.to_script`).
This module needs neither torch nor hypothesis.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeVar, cast

from refgrad.kernel import evaluate
from refgrad.ops import OpSpec
from refgrad.oracle.optable import op_table

T = TypeVar("T")

__all__ = [
    "MAX_PROGRAM_CHARACTERS",
    "Const",
    "Form",
    "OperandKind",
    "Program",
    "Ref",
    "Step",
    "forms_of",
    "forward_slopes",
    "parse_json",
    "partials_at",
]

OperandKind = Literal["node", "const"]
"""Whether an operand is an earlier node or a number written into the program."""

Form = tuple[OperandKind, ...]
"""The kinds of a step's operands, e.g. ``("const", "node")`` for ``2.0 * x``."""

MAX_PROGRAM_CHARACTERS: Final = 16 * 1024 * 1024
"""The longest program JSON :meth:`Program.from_json` reads (the oracle's programs take a few kB)."""

# A program nests five levels ({"steps": [{"operands": [{"node": 0}]}]}), a stored entry six.
_MAX_NESTING: Final = 8
# Unrolled (runs of plain characters, then one escape) so that long strings match in linear time.
_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_A_BRACKET: Final = re.compile(r"[^\[\]{}]")
_INNERMOST_PAIR: Final = re.compile(r"\[\]|\{\}")


def forms_of(op: str) -> tuple[Form, ...]:
    """The operand forms a program may use for registry op ``op``, most basic first.

    Unary ops take a node; binary ops take two nodes or a number on either
    side, except that ``vpow``'s exponent is always a node (``x ** c`` is ``pow``).
    """
    spec = op_table[op]
    if spec.arity == 1:
        return (("node",),)
    node_only = spec.node_only
    forms: list[Form] = [("node", "node")]
    if 1 not in node_only:
        forms.append(("node", "const"))
    if 0 not in node_only:
        forms.append(("const", "node"))
    return tuple(forms)


@dataclass(frozen=True, slots=True)
class Ref:
    """An operand that is an earlier node: an input (``node < len(inputs)``) or a step's result."""

    node: int

    def __post_init__(self) -> None:
        if type(self.node) is not int or self.node < 0:
            raise ValueError(f"Ref.node must be a non-negative int, got {self.node!r}")


@dataclass(frozen=True, slots=True)
class Const:
    """An operand that is a number written into the program (a constant leaf)."""

    value: float

    def __post_init__(self) -> None:
        if type(self.value) is not float or not math.isfinite(self.value):
            raise ValueError(f"Const.value must be a finite float, got {self.value!r}")


Operand = Ref | Const


@dataclass(frozen=True, slots=True)
class Step:
    """One application of the registry op named ``op`` to ``operands``, with static ``params``."""

    op: str
    operands: tuple[Operand, ...]
    params: tuple[float, ...] = ()

    @property
    def form(self) -> Form:
        """The kinds of the operands, e.g. ``("node", "const")``."""
        return tuple("node" if isinstance(operand, Ref) else "const" for operand in self.operands)

    def arguments(self, nodes: Sequence[T]) -> tuple[T | float, ...]:
        """The operands, each node looked up in ``nodes`` (values, tensors, live nodes) and each constant its number."""
        return tuple(nodes[operand.node] if isinstance(operand, Ref) else operand.value for operand in self.operands)


def _check_float(value: object, what: str) -> float:
    if type(value) is not float or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite float, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Program:
    """An expression graph with concrete inputs: ``inputs``, then ``steps``; the last step is the output.

    Construction checks everything: op names exist in the registry, arities
    and parameter counts match, operands refer to earlier nodes, every step has
    at least one node operand, and all numbers are finite floats.
    """

    inputs: tuple[float, ...]
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        # Checked at run time too: programs also come from JSON and from untyped callers.
        inputs: object = self.inputs
        steps: object = self.steps
        if not isinstance(inputs, tuple) or not inputs:
            raise ValueError("a program needs at least one input (a non-empty tuple of floats)")
        for position, value in enumerate(self.inputs):
            _check_float(value, f"input {position}")
        if not isinstance(steps, tuple) or not steps:
            raise ValueError("a program needs at least one step (a non-empty tuple of Step)")
        for node, step in self.numbered_steps():
            self._check_step(node, step)

    @staticmethod
    def _check_step(node: int, candidate: object) -> None:
        if not isinstance(candidate, Step):
            raise TypeError(f"node {node}: steps must be Step, got {type(candidate).__name__}")
        step = candidate
        operands: object = step.operands
        params: object = step.params
        op_table.check_name(step.op, f"node {node}: ")
        spec = op_table[step.op]
        if not isinstance(operands, tuple) or len(operands) != spec.arity:
            raise ValueError(f"node {node}: op {step.op!r} takes {spec.arity} operand(s), got {step.operands!r}")
        if not isinstance(params, tuple) or len(params) != len(spec.params):
            raise ValueError(f"node {node}: op {step.op!r} takes parameters {spec.params}, got {step.params!r}")
        for name, value in zip(spec.params, step.params, strict=True):
            _check_float(value, f"node {node}: parameter {name!r}")
        for operand in step.operands:
            if isinstance(operand, Ref):
                if operand.node >= node:
                    raise ValueError(f"node {node}: operand refers to node {operand.node}, which is not earlier")
            elif not isinstance(operand, Const):
                raise TypeError(f"node {node}: operands must be Ref or Const, got {type(operand).__name__}")
        if step.form not in forms_of(step.op):
            raise ValueError(f"node {node}: op {step.op!r} does not take operands of form {step.form}")

    # Shape ------------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        """Inputs plus steps."""
        return len(self.inputs) + len(self.steps)

    @property
    def output(self) -> int:
        """The output's node number (the last step)."""
        return self.node_count - 1

    def step_of(self, node: int) -> Step | None:
        """The step that computes ``node``; ``None`` for an input."""
        index = node - len(self.inputs)
        return self.steps[index] if index >= 0 else None

    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """For each node, the nodes whose steps use it (once per use: ``x * x`` lists its node twice)."""
        users: list[list[int]] = [[] for _ in range(self.node_count)]
        for node, step in self.numbered_steps():
            for operand in step.operands:
                if isinstance(operand, Ref):
                    users[operand.node].append(node)
        return tuple(tuple(found) for found in users)

    def numbered_steps(self) -> Iterator[tuple[int, Step]]:
        """Each step with the node it computes (the inputs are nodes 0 to ``len(inputs) - 1``)."""
        return enumerate(self.steps, start=len(self.inputs))

    def ancestors(self, node: int) -> frozenset[int]:
        """``node`` and every node it depends on (by an explicit stack: any depth)."""
        found = {node}
        stack = [node]
        while stack:
            step = self.step_of(stack.pop())
            if step is None:
                continue
            for operand in step.operands:
                if isinstance(operand, Ref) and operand.node not in found:
                    found.add(operand.node)
                    stack.append(operand.node)
        return frozenset(found)

    def live(self) -> tuple[bool, ...]:
        """For each node, whether the output depends on it."""
        alive = [False] * self.node_count
        alive[self.output] = True
        for node in range(self.output, len(self.inputs) - 1, -1):
            step = self.step_of(node)
            if not alive[node] or step is None:
                continue
            for operand in step.operands:
                if isinstance(operand, Ref):
                    alive[operand.node] = True
        return tuple(alive)

    def pruned(self) -> Program:
        """The program with only the inputs and steps the output depends on (nodes renumbered in order).

        The output's value and every remaining node's gradient are unchanged:
        what the output does not depend on contributes nothing to either.
        """
        alive = self.live()
        if all(alive):
            return self
        number: dict[int, int] = {}
        inputs = [value for node, value in enumerate(self.inputs) if alive[node]]
        for node in range(len(self.inputs)):
            if alive[node]:
                number[node] = len(number)
        steps: list[Step] = []
        for node, step in self.numbered_steps():
            if not alive[node]:
                continue
            operands = tuple(Ref(number[o.node]) if isinstance(o, Ref) else o for o in step.operands)
            number[node] = len(inputs) + len(steps)
            steps.append(Step(step.op, operands, step.params))
        return Program(tuple(inputs), tuple(steps))

    def depth(self) -> int:
        """Ops on the longest path from an input to the output."""
        depths = [0] * self.node_count
        for node, step in self.numbered_steps():
            below = [depths[operand.node] for operand in step.operands if isinstance(operand, Ref)]
            depths[node] = 1 + max(below)
        return depths[self.output]

    def ops(self) -> frozenset[str]:
        """The names of the ops the program uses."""
        return frozenset(step.op for step in self.steps)

    # Float forward ----------------------------------------------------------------------

    def evaluate(self, inputs: Sequence[float] | None = None) -> tuple[float, ...]:
        """Every node's value by the registry's float forwards; :class:`refgrad.DomainError` outside a domain.

        ``inputs`` replaces the program's own input values (finite differences
        evaluate the same program at nearby points).
        """
        values = list(self.inputs if inputs is None else inputs)
        if len(values) != len(self.inputs):
            raise ValueError(f"the program has {len(self.inputs)} inputs, got {len(values)} values")
        for step in self.steps:
            args = step.arguments(values)
            values.append(evaluate(op_table[step.op], args, step.params))
        return tuple(values)

    def local_partials(self, values: Sequence[float], index: int) -> list[float] | None:
        """Step ``index``'s registry partials at node values ``values`` (see :func:`partials_at`)."""
        step = self.steps[index]
        output = values[len(self.inputs) + index]
        return partials_at(op_table[step.op], step.arguments(values), output, step.params)

    def reference_partials(self, values: Sequence[float], index: int) -> list[float] | None:
        """Step ``index``'s partials as the references may trust them: the registry's for a registry op.

        For an op of the caller's (:data:`~refgrad.oracle.optable.op_table`) its partials are what
        is being checked, so the slopes of its own forward stand in (:func:`forward_slopes`).
        """
        step = self.steps[index]
        spec = op_table[step.op]
        if not op_table.is_extra(step.op):
            return self.local_partials(values, index)
        return forward_slopes(spec, step.arguments(values), step.params)

    # JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary: ``{"inputs": [...], "steps": [{"op", "operands", "params"}]}``."""
        steps: list[dict[str, object]] = []
        for step in self.steps:
            operands: list[dict[str, object]] = [
                {"node": o.node} if isinstance(o, Ref) else {"const": o.value} for o in step.operands
            ]
            steps.append({"op": step.op, "operands": operands, "params": list(step.params)})
        return {"inputs": list(self.inputs), "steps": steps}

    def to_json(self) -> str:
        """The program as JSON text (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: object) -> Program:
        """The program described by ``data`` (as produced by :meth:`to_dict`); ``ValueError`` if malformed."""
        fields = _object(data, {"inputs", "steps"}, "a program")
        raw_inputs, raw_steps = _list(fields["inputs"], "'inputs'"), _list(fields["steps"], "'steps'")
        inputs = tuple(_number(value, f"input {i}") for i, value in enumerate(raw_inputs))
        steps: list[Step] = []
        for index, raw in enumerate(raw_steps):
            step = _object(raw, {"op", "operands", "params"}, f"step {index}")
            op = step["op"]
            if not isinstance(op, str):
                raise ValueError(f"step {index}: 'op' must be a string, got {op!r}")
            operands = tuple(_operand(item, f"step {index}") for item in _list(step["operands"], "'operands'"))
            params = tuple(_number(value, f"step {index} parameter") for value in _list(step["params"], "'params'"))
            steps.append(Step(op, operands, params))
        return cls(inputs, tuple(steps))

    @classmethod
    def from_json(cls, text: str) -> Program:
        """The program in ``text`` (as produced by :meth:`to_json`); ``ValueError`` naming what is wrong.

        Safe on hostile text: nothing is evaluated, and text that is too long,
        nests too deeply, repeats a key, or holds ``NaN``, ``Infinity`` or
        numbers too large for a float is refused before or while it is parsed.
        """
        return cls.from_dict(parse_json(text))

    # Script -----------------------------------------------------------------------------

    def expression_lines(self, *, abs_method: bool = True) -> list[str]:
        """The body of ``f(x0, x1, ...)``: one assignment per step, micrograd-style syntax.

        The same text runs on any micrograd-style class and on torch tensors:
        ``+ - * / **``, unary ``-`` and the methods ``exp``, ``log``, ``tanh``,
        ``sigmoid``, ``relu`` and ``abs`` (or the builtin ``abs()`` when
        ``abs_method`` is false).
        """
        from refgrad.oracle.surface import spell

        lines: list[str] = []
        for node, step in self.numbered_steps():
            operands = [
                _name(o.node, len(self.inputs)) if isinstance(o, Ref) else _literal(o.value) for o in step.operands
            ]
            params = [_literal(value) for value in step.params]
            lines.append(f"{_name(node, len(self.inputs))} = {spell(step.op, operands, params, abs_method=abs_method)}")
        return lines

    def to_script(
        self,
        *,
        engine_import: str = "from refgrad import Value",
        differentiate: str = "gradients",
        abs_method: bool = True,
        data: str = "data",
        grad: str = "grad",
        backward: str = "backward",
        on_torch: bool = True,
        reference: Literal["torch", "mpmath"] = "torch",
        engine_half: str | None = None,
    ) -> str:
        """A standalone Python script computing the program on an engine and on a reference.

        ``engine_import`` must bind ``Value``; ``differentiate`` is
        ``"gradients"`` (refgrad: ``out.backward()`` returns the gradients of
        every node, and fails if any is not finite) or ``"backward"``
        (micrograd-style: ``out.backward()``, then each input's ``.grad``);
        ``data``, ``grad`` and ``backward`` rename those for an engine that
        calls them something else. The reference is torch (float64) or, with ``reference="mpmath"``,
        the exact reference (refgrad's mpmath evaluation, which needs no torch). ``on_torch=False``
        leaves torch's half out (a program using an op without a torch counterpart), saying so.
        ``engine_half``, code printing the engine's line, runs instead of building the program on
        ``Value`` (an engine outside Python, run through its adapter); ``engine_import`` then holds
        what it imports.
        """
        if differentiate not in ("gradients", "backward"):
            raise ValueError(f"differentiate must be 'gradients' or 'backward', got {differentiate!r}")
        if reference not in ("torch", "mpmath"):
            raise ValueError(f"reference must be 'torch' or 'mpmath', got {reference!r}")
        names = [_name(i, len(self.inputs)) for i in range(len(self.inputs))]
        body = "\n".join(f"    {line}" for line in self.expression_lines(abs_method=abs_method))
        if differentiate == "gradients":
            backward, engine_grads = "grads = out.backward()\n", "[grads[x] for x in xs]"
        else:
            for attribute in (data, grad, backward):
                if not attribute.isidentifier():
                    raise ValueError(f"attribute names must be identifiers, got {attribute!r:.60}")
            backward, engine_grads = f"out.{backward}()\n", f"[x.{grad} for x in xs]"
        inputs = ", ".join(_literal(value, parenthesize=False) for value in self.inputs)
        if reference == "mpmath":
            header = "the exact reference (mpmath)"
            imports = (
                "from refgrad.oracle import Program\nfrom refgrad.oracle.exact_reference import exact_reference\n\n"
            )
            reference_half = (
                f"exact = exact_reference(Program.from_json({self.to_json()!r}))\n"
                f'print("exact: ", exact.values[{self.output}], list(exact.gradients[:len(inputs)]))\n'
            )
        elif on_torch:
            header, imports = "PyTorch (float64)", "import torch\n\n"
            reference_half = (
                "ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in inputs]\n"
                "out_t = f(*ts)\n"
                "grads_t = torch.autograd.grad(out_t, ts, allow_unused=True)\n"
                'print("torch: ", out_t.item(), [0.0 if g is None else g.item() for g in grads_t])\n'
            )
        else:
            header, imports = "PyTorch (float64)", ""
            reference_half = 'print("torch:  not run: an op of the program has no torch counterpart (torch=None)")\n'
        engine_block = (
            engine_half
            if engine_half is not None
            else (
                "xs = [Value(v) for v in inputs]\n"
                "try:\n"
                "    out = f(*xs)\n"
                f"    {backward}"
                f'    print("engine:", out.{data}, {engine_grads})\n'
                "except Exception as error:  # the engine's way of refusing\n"
                '    print("engine:", type(error).__name__, error)\n\n'
            )
        )
        return (
            f'"""refgrad oracle: run this to compare the engine with {header} on one program."""\n\n'
            f"{imports}"
            f"{engine_import}\n\n\n"
            f"def f({', '.join(names)}):\n"
            f"{body}\n"
            f"    return {_name(self.output, len(self.inputs))}\n\n\n"
            f"inputs = [{inputs}]\n\n"
            f"{engine_block}"
            f"{reference_half}"
        )

    def __str__(self) -> str:
        inputs = ", ".join(f"{_name(i, len(self.inputs))}={value!r}" for i, value in enumerate(self.inputs))
        return f"program({inputs}): " + "; ".join(self.expression_lines())


def _name(node: int, input_count: int) -> str:
    return f"x{node}" if node < input_count else f"n{node}"


def _literal(value: float, *, parenthesize: bool = True) -> str:
    text = repr(value)
    # Parentheses keep -2.0 ** y from parsing as -(2.0 ** y).
    return f"({text})" if parenthesize and text.startswith("-") else text


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the largest float
        raise ValueError(f"{what} must be a finite float, got an integer of {len(str(value))} digits") from None
    return _check_float(number, what)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a finite number; a program holds finite floats only")


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r:.80} appears twice in one object")
        found[key] = value
    return found


def _check_nesting(text: str) -> None:
    """``ValueError`` unless brackets (outside strings) match and nest at most ``_MAX_NESTING`` deep.

    Python's JSON parser recurses once per level, so deep nesting must be
    refused before parsing; this works with regular expressions only.
    """
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub('""', text))
    for _ in range(_MAX_NESTING):
        if not brackets:
            return
        brackets = _INNERMOST_PAIR.sub("", brackets)
    if brackets:
        raise ValueError(f"brackets nest deeper than {_MAX_NESTING} levels or do not match")


def parse_json(text: str) -> object:
    """``text`` parsed as JSON for a program or a stored entry, refusing anything hostile with a ``ValueError``.

    Refused: text that is not a string or longer than :data:`MAX_PROGRAM_CHARACTERS`,
    nesting deeper than a program needs, ``NaN`` and ``Infinity``, repeated
    keys, integers longer than Python converts, and invalid JSON.
    """
    if not isinstance(text, str):
        raise TypeError(f"program JSON must be a str, got {type(text).__name__}")
    if len(text) > MAX_PROGRAM_CHARACTERS:
        raise ValueError(f"program JSON is {len(text)} characters long, more than the {MAX_PROGRAM_CHARACTERS} allowed")
    _check_nesting(text)
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)
    except ValueError as error:  # JSONDecodeError, or one of the hooks above, or int() refusing a giant number
        raise ValueError(f"not valid program JSON: {error}") from None


def _object(data: object, keys: set[str], what: str) -> dict[str, object]:
    """``data`` as a JSON object with exactly ``keys``; ``ValueError`` otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be an object with the keys {sorted(keys)}, got {data!r:.80}")
    found = cast("dict[object, object]", data)
    if set(found) != keys:
        raise ValueError(f"{what} must have exactly the keys {sorted(keys)}, got {sorted(map(str, found))}")
    return {str(key): value for key, value in found.items()}


def _list(data: object, what: str) -> list[object]:
    if not isinstance(data, list):
        raise ValueError(f"{what} must be a list, got {data!r:.80}")
    return cast("list[object]", data)


def _operand(item: object, where: str) -> Operand:
    if isinstance(item, dict) and len(cast("dict[object, object]", item)) == 1:
        fields = cast("dict[object, object]", item)
        if "node" in fields:
            node = fields["node"]
            if isinstance(node, bool) or not isinstance(node, int):
                raise ValueError(f"{where}: a node operand must be an integer, got {node!r}")
            return Ref(node)
        if "const" in fields:
            return Const(_number(fields["const"], f"{where} constant"))
    raise ValueError(f"{where}: an operand is {{'node': int}} or {{'const': number}}, got {item!r}")


def partials_at(spec: OpSpec, args: Sequence[float], output: float, params: Sequence[float]) -> list[float] | None:
    """``spec``'s float partials at ``args`` (NaN where one is not real); None outside its domain or where they fail."""
    if not spec.domain.contains(*args, *params):
        return None
    try:
        raw = spec.partials(tuple(args), output, tuple(params))
    except (ArithmeticError, ValueError):
        return None
    # Outside a partial's domain Python may answer with a complex number (a negative base's power),
    # whatever the rule's annotation says: read the answers as objects.
    answers: tuple[object, ...] = tuple(raw)
    return [float(p) if isinstance(p, float | int) else math.nan for p in answers]


_SLOPE_ULPS: Final = 16.0
"""The first step of :func:`forward_slopes` in ulps of the operand (at least :data:`_SLOPE_FLOOR`)."""
_SLOPE_FLOOR: Final = 2.0**-30
"""The smallest first step of :func:`forward_slopes`: near 0, ulps say nothing of the scale."""


def forward_slopes(spec: OpSpec, args: Sequence[float], params: Sequence[float]) -> list[float] | None:
    """``spec``'s partials estimated from its float forward alone (Richardson central differences).

    For each operand, two Richardson estimates (steps ``e, e/2`` and ``e/2, e/4``, with ``e`` 16
    ulps of the operand, at least ``2**-30``: as small as the floats allow, so that the steps
    resolve the forward where anything can) that must agree to a quarter (or within rounding): a
    few correct digits where the forward is smooth at that scale, NaN where it is not (``sin`` at
    ``6e16``, whose ulp is 8) or where an evaluation fails; None outside the domain. Used where
    the entry's own partials cannot be trusted because they are the ones under test.
    """
    if not spec.domain.contains(*args, *params):
        return None
    slopes: list[float] = []
    for position, x in enumerate(args):
        step = max(_SLOPE_ULPS * math.ulp(x), _SLOPE_FLOOR)
        quotients: list[float] = []
        largest = 0.0
        for h in (step, step / 2.0, step / 4.0):
            ends: list[float] = []
            for point in (x + h, x - h):
                moved = list(args)
                moved[position] = point
                try:
                    ends.append(float(spec.forward(*moved, *params)))
                except (ArithmeticError, ValueError, TypeError):
                    ends.append(math.nan)
            largest = max(largest, *(abs(end) for end in ends))
            quotients.append((ends[0] - ends[1]) / ((x + h) - (x - h)))
        first = quotients[1] + (quotients[1] - quotients[0]) / 3.0
        second = quotients[2] + (quotients[2] - quotients[1]) / 3.0
        noise = 8.0 * (2.0**-52 * largest + 2.0**-1074) / (step / 4.0)
        agree = abs(first - second) <= 0.25 * max(abs(first), abs(second)) + noise
        slopes.append(second if agree and math.isfinite(second) else math.nan)
    return slopes
