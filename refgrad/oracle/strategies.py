"""Hypothesis strategies for programs over every op in the registry.

>>> from hypothesis import given
>>> from refgrad.oracle import programs
>>> @given(programs(ops=["mul", "tanh"]))
... def test_my_property(program): ...

Generation reads everything about an op from :data:`refgrad.ops.registry`:
its arity, its static parameters, its domain (``domain.contains``) and its
kinks. It is *value-aware*: each step is drawn with the values of the earlier
nodes in hand, and a drawn choice that would leave the op's domain (or make
an unhealthy magnitude) is repaired deterministically, by moving on to the next
candidate operand, constant, parameter or op, instead of being rejected. So
health checks stay on and almost nothing is filtered.

Every choice is drawn in a fixed pattern per step, and operands are drawn as
"how many nodes back", which shrinks towards the latest node: a failing
program shrinks to a short chain ending in the op at fault.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from hypothesis import assume
from hypothesis import strategies as st

from refgrad.errors import DomainError
from refgrad.kernel import evaluate
from refgrad.ops import OpSpec, registry
from refgrad.oracle._arguments import op_names_argument
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Form, Operand, Program, Ref, Step, forms_of

__all__ = [
    "HEALTHY_MAGNITUDE",
    "OutOfDomain",
    "all_forms",
    "constants",
    "exponents",
    "input_values",
    "near_edges",
    "programs",
]

OutOfDomain = Literal["never", "sometimes", "always"]
"""Whether drawn programs end with a step outside its op's domain."""

HEALTHY_MAGNITUDE: Final = (1e-100, 1e100)
"""Nonzero results outside this band are drawn only on "edge" steps (1 in 12).

Inside it, a product of two values cannot overflow or underflow, so most
programs have finite gradients to compare; edge steps still reach the float
limits (``exp`` near its overflow point, subnormal results).
"""

_CONTINUE_ODDS: Final = 12  # a program grows by one more step with probability 11/12, 1/12 an edge step
_SEARCH_LIMIT: Final = 12  # candidate nodes tried per operand before moving on


def _flip_points(contains: Callable[[float], bool]) -> list[float]:
    """Points where a one-argument domain test changes its answer, found by bisection on a log grid."""
    grid = sorted({0.0, *(s * 10.0**k for s in (-1.0, 1.0) for k in range(-300, 309, 4))})
    found: list[float] = []
    for left, right in itertools.pairwise(grid):
        inside = contains(left)
        if inside == contains(right):
            continue
        low, high = left, right
        for _ in range(200):
            middle = low / 2 + high / 2
            if middle in (low, high):
                break
            if contains(middle) == inside:
                low = middle
            else:
                high = middle
        found += [low, high]
    return found


def near_edges(spec: OpSpec) -> tuple[float, ...]:
    """Values at and around ``spec``'s kinks and one-argument domain boundaries (from the registry entry)."""
    points: list[float] = []
    for kink in spec.kinks:
        points += [kink.at, kink.at + 1e-12, kink.at - 1e-12, math.nextafter(kink.at, math.inf)]
    if spec.arity == 1 and not spec.params:
        points += _flip_points(spec.domain.contains)
    finite = {p for p in points if math.isfinite(p)}
    return tuple(sorted(finite))


def _edge_inputs() -> tuple[float, ...]:
    # The built-ins' edges, drawn as inputs by every run; an op of the caller's gets its
    # kinks and edges checked by the structured programs (refgrad.oracle.campaigns).
    edges: set[float] = set()
    for spec in registry:
        edges.update(near_edges(spec))
    return tuple(sorted(edges, key=lambda value: (abs(value), value)))


# The order is the shrinker's: earlier is simpler. 0.0 comes second so that a bug
# at a kink shrinks to the input sitting on it rather than to a chain reaching it.
_INPUT_SPECIALS: Final = (
    0.5,
    0.0,
    1.0,
    -1.0,
    2.0,
    -2.0,
    3.0,
    -0.5,
    -0.0,
    10.0,
    -7.0,
    100.0,
    0.1,
    1.5,
    1e-8,
    -1e-8,
    2.0**-30,
    1e8,
    -1e8,
    1e15,
    1e100,
    -1e100,
    1e-300,
    -1e-300,
    5e-324,
    sys.float_info.max,
)
_CONST_SPECIALS: Final = (2.0, 1.0, 0.5, -1.0, 3.0, 0.0, -2.0, 10.0, 0.1, 1e-3, 1e3, -0.5, math.e, -0.0)
_EXPONENT_SPECIALS: Final = (2.0, 3.0, 0.5, 1.0, 0.0, -1.0, -2.0, 1.5, -0.5, 4.0, 1 / 3, 2.5, -3.0, 10.0)
# Tried in order when the drawn constant or exponent leaves the domain.
_CONST_FALLBACKS: Final = (1.0, 2.0, 0.5, -1.0, 3.0)
_EXPONENT_FALLBACKS: Final = (2.0, 1.0, 3.0, -1.0, 0.0)
# Numbers that push a final step out of its domain: poles, negative logs, overflow.
_OUT_CONSTS: Final = (0.0, -1.0, -0.5, -0.0, 1e308, -1e308, 800.0)
_OUT_EXPONENTS: Final = (0.5, -1.0, 1.5, -0.5, 1e3, -2.0, 1 / 3)


def input_values() -> st.SearchStrategy[float]:
    """Input values: special numbers, integers, moderate floats and floats of any finite magnitude.

    The specials include exact zeros of both signs, small and large
    magnitudes, subnormals, the largest float, and every point at or just
    beside a registry op's kinks and one-argument domain boundaries (e.g. the
    ``x`` where ``exp(x)`` overflows).
    """
    return _INPUT_VALUES


def constants() -> st.SearchStrategy[float]:
    """Numbers written into programs as constant operands."""
    return _CONSTANTS


def exponents() -> st.SearchStrategy[float]:
    """Static exponents for ``x ** c``: integers of both signs, zero, roots and other fractions."""
    return _EXPONENTS


# Built once: hypothesis validates a strategy on its first draw, not on every draw.
_INPUT_VALUES: Final = st.one_of(
    st.sampled_from(_INPUT_SPECIALS + tuple(v for v in _edge_inputs() if v not in _INPUT_SPECIALS)),
    st.integers(-20, 20).map(float),
    st.floats(-10.0, 10.0),
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=False, allow_infinity=False),
)
_CONSTANTS: Final = st.one_of(
    st.sampled_from(_CONST_SPECIALS), st.integers(-10, 10).map(float), st.floats(-100.0, 100.0)
)
_EXPONENTS: Final = st.one_of(st.sampled_from(_EXPONENT_SPECIALS), st.integers(-4, 6).map(float), st.floats(-4.0, 4.0))
_OUT_CONSTANTS: Final = st.sampled_from(_OUT_CONSTS)
_OUT_EXPONENTS_STRATEGY: Final = st.sampled_from(_OUT_EXPONENTS)


def all_forms(ops: Iterable[str] | None = None) -> tuple[tuple[str, Form], ...]:
    """Every (op, operand form) pair for ``ops`` (default: every op of the run), in registry order, own ops last."""
    names = op_table.names if ops is None else op_names_argument(ops)
    wanted = set(names)
    return tuple((name, form) for name in op_table.names if name in wanted for form in forms_of(name))


@dataclass(frozen=True, slots=True)
class _Choices:
    """The raw draws for one step; the search for a valid step starts from them."""

    op: int
    form: int
    first_back: int
    second_back: int
    same: bool
    constant: float | None
    params: tuple[float, ...]
    edge: bool


@dataclass(slots=True)
class _Table:
    """The ops a strategy may use, each with its allowed forms, in registry order (the caller's own ops last)."""

    specs: tuple[OpSpec, ...]
    forms: dict[str, tuple[Form, ...]]
    pairs: tuple[tuple[int, int], ...]
    """(op index, form index) for one draw: every op equally often, its forms in turn."""


def _table(forms: Sequence[tuple[str, Form]]) -> _Table:
    by_op: dict[str, list[Form]] = {}
    for name, form in forms:
        op_table.check_name(name)
        if form not in forms_of(name):
            raise ValueError(f"op {name!r} has no operand form {form}")
        by_op.setdefault(name, []).append(form)
    if not by_op:
        raise ValueError("programs() needs at least one op")
    specs = tuple(spec for spec in op_table if spec.name in by_op)
    # Each op gets six slots (six is divisible by 1, 2 and 3 forms), so no op is drawn more than another.
    pairs = tuple((op, slot % len(by_op[spec.name])) for op, spec in enumerate(specs) for slot in range(6))
    return _Table(specs, {name: tuple(found) for name, found in by_op.items()}, pairs)


# Each draw costs hypothesis some microseconds, so a step draws only what its op uses; and
# the shrinker deletes at most five consecutive choices at once, so a step is at most five.
# Half the time the latest node, so that chains grow deep; 1 in 8 anywhere, for sharing.
_BACK: Final = st.integers(0, 7)  # 0-3: the latest node; 4-6: 1-3 nodes further back; 7: anywhere
_SECOND: Final = st.integers(0, 8)  # as _BACK, and 8: the same node as the first operand (x * x)
_MORE: Final = st.integers(0, _CONTINUE_ODDS - 1)  # 0 ends the program; the last value makes an edge step
_ANYWHERE: Final = 7


def _draw_back(draw: st.DrawFn, count: int, code: int) -> int:
    if code >= _ANYWHERE:
        return draw(st.integers(0, count - 1)) if count > 1 else 0
    return min(max(code - 3, 0), count - 1)


@st.composite
def _step_choices(draw: st.DrawFn, table: _Table, count: int, out_of_domain: bool, ask_more: bool) -> _Choices | None:
    """One step's draws, as one span, so that the shrinker deletes a whole step at once.

    Every span starts with the decision to add this step at all (None: the
    program ends here); the first step ignores it (``ask_more=False``). All
    spans having one layout is what lets the shrinker delete the first step
    too: the second one then takes its place unchanged.
    """
    more = draw(_MORE)
    if more == 0 and ask_more:
        return None
    op, form = table.pairs[draw(st.integers(0, len(table.pairs) - 1))]
    spec = table.specs[op]
    forms = table.forms[spec.name]
    first_back = _draw_back(draw, count, draw(_BACK))
    second_back, same, constant = 0, False, None
    if forms[form] == ("node", "node"):
        code = draw(_SECOND)
        same = code == _ANYWHERE + 1
        second_back = 0 if same else _draw_back(draw, count, code)
    elif len(forms[form]) == 2:
        constant = draw(_OUT_CONSTANTS if out_of_domain else _CONSTANTS)
    params = tuple(draw(_OUT_EXPONENTS_STRATEGY if out_of_domain else _EXPONENTS) for _ in spec.params)
    edge = more == _CONTINUE_ODDS - 1
    return _Choices(op, form, first_back, second_back, same, constant, params, edge)


def _recent_first(count: int, back: int) -> Iterator[int]:
    """Node numbers starting ``back`` nodes before the latest, then further back, wrapping around."""
    start = count - 1 - back
    for offset in range(min(count, _SEARCH_LIMIT)):
        yield (start - offset) % count


def _result(spec: OpSpec, args: tuple[float, ...], params: tuple[float, ...], *, edge: bool) -> float | None:
    """The op's value if it is in the domain (and of healthy magnitude unless ``edge``), else None."""
    if not spec.domain.contains(*args, *params):
        return None
    try:
        value = evaluate(spec, args, params)
    except DomainError:
        return None
    low, high = HEALTHY_MAGNITUDE
    if not edge and value != 0.0 and not low <= abs(value) <= high:
        return None
    return value


def _outside(spec: OpSpec, args: tuple[float, ...], params: tuple[float, ...], *, edge: bool) -> float | None:
    """``0.0`` (a placeholder) if the op is outside its domain at ``args``, else None."""
    try:
        evaluate(spec, args, params)
    except DomainError:
        return 0.0
    return None


Judge = Callable[..., float | None]


def _resolve(
    spec: OpSpec, form: Form, choices: _Choices, values: Sequence[float], *, judge: Judge, consts: Sequence[float]
) -> tuple[Step, float] | None:
    """The first operands for ``spec`` in ``form``, searched from the drawn choices, that ``judge`` accepts."""
    count = len(values)
    param_options = [choices.params] if len(choices.params) == len(spec.params) else []
    if spec.params:
        param_options += [(value,) * len(spec.params) for value in _EXPONENT_FALLBACKS]
    constant_options = list(consts) if choices.constant is None else [choices.constant, *consts]
    for params in param_options:
        for first in _recent_first(count, choices.first_back):
            if spec.arity == 1:
                result = judge(spec, (values[first],), params, edge=choices.edge)
                if result is not None:
                    return Step(spec.name, (Ref(first),), params), result
                continue
            pairs: Iterable[tuple[Operand, Operand]]
            if form == ("node", "node"):
                seconds = list(_recent_first(count, choices.second_back))
                if choices.same:
                    seconds.insert(0, first)
                pairs = ((Ref(first), Ref(second)) for second in seconds)
            elif form == ("node", "const"):
                pairs = ((Ref(first), Const(c)) for c in constant_options)
            else:
                pairs = ((Const(c), Ref(first)) for c in constant_options)
            for pair in pairs:
                args = tuple(values[o.node] if isinstance(o, Ref) else o.value for o in pair)
                result = judge(spec, args, params, edge=choices.edge)
                if result is not None:
                    return Step(spec.name, pair, params), result
    return None


def _draw_step(
    draw: st.DrawFn, table: _Table, values: Sequence[float], *, out_of_domain: bool = False, ask_more: bool = False
) -> tuple[Step, float] | None:
    """The next step, or None when the draw ends the program or no op applies."""
    choices = draw(_step_choices(table, len(values), out_of_domain, ask_more))
    if choices is None:
        return None
    judge: Judge = _outside if out_of_domain else _result
    consts = _OUT_CONSTS if out_of_domain else _CONST_FALLBACKS
    count = len(table.specs)
    for offset in range(count):
        spec = table.specs[(choices.op + offset) % count]
        forms = table.forms[spec.name]
        for form_offset in range(len(forms)):
            form = forms[(choices.form + form_offset) % len(forms)]
            found = _resolve(spec, form, choices, values, judge=judge, consts=consts)
            if found is not None:
                return found
    return None


def _probe_value(spec: OpSpec) -> float | None:
    """A value ``v`` with ``spec`` in its domain at ``(v,)`` or ``(v, v)`` (with a simple exponent)."""
    for value in (1.5, 0.75, 2.0, 0.5, 3.0, -0.5, -1.5, 0.0):
        args = (value,) * spec.arity
        for params in ((), (2.0,), (1.0,)):
            if len(params) == len(spec.params) and _result(spec, args, params, edge=False) is not None:
                return value
    return None


@st.composite
def _programs(draw: st.DrawFn, table: _Table, max_steps: int, max_inputs: int, out_of_domain: OutOfDomain) -> Program:
    inputs = draw(st.lists(_INPUT_VALUES, min_size=1, max_size=max_inputs))
    ending_outside = out_of_domain == "always" or (out_of_domain == "sometimes" and draw(st.integers(0, 7)) == 7)
    values = list(inputs)
    steps: list[Step] = []
    found = _draw_step(draw, table, values)
    if found is None:
        # No op applies to the drawn inputs (say, --ops log with negative inputs):
        # move the first input to a point where the table's first op applies, and draw again.
        for spec in table.specs:
            probe = _probe_value(spec)
            if probe is not None:
                inputs[0] = values[0] = probe
                break
        found = _draw_step(draw, table, values)
    assume(found is not None)
    while found is not None:
        step, value = found
        steps.append(step)
        values.append(value)
        if len(steps) >= max_steps:
            break
        found = _draw_step(draw, table, values, ask_more=True)
    if ending_outside:
        last = _draw_step(draw, table, values, out_of_domain=True)
        if out_of_domain == "always":
            assume(last is not None)
        if last is not None:
            steps.append(last[0])
    return Program(tuple(inputs), tuple(steps))


def programs(
    *,
    ops: Iterable[str] | None = None,
    forms: Iterable[tuple[str, Form]] | None = None,
    max_steps: int = 40,
    max_inputs: int = 4,
    out_of_domain: OutOfDomain = "never",
) -> st.SearchStrategy[Program]:
    """Programs over the registry's ops: up to ``max_steps`` steps on up to ``max_inputs`` inputs.

    ``ops`` restricts the op names (default: every op in the registry);
    ``forms`` restricts further to (op, operand form) pairs, e.g. to leave out
    ``("vpow", ("const", "node"))`` for an engine without ``__rpow__``.

    With ``out_of_domain="never"`` every step's forward is inside its op's
    domain (a gradient may still be infinite, as for ``x ** 0.5`` at 0);
    ``"sometimes"`` ends one program in eight with a step outside its op's
    domain (a pole, a negative logarithm, an overflow), and ``"always"`` ends
    every program that way (rejecting inputs where no op can leave its domain).
    """
    if max_steps < 1 or max_inputs < 1:
        raise ValueError(f"max_steps and max_inputs must be at least 1, got {max_steps} and {max_inputs}")
    if out_of_domain not in ("never", "sometimes", "always"):
        raise ValueError(f"out_of_domain must be 'never', 'sometimes' or 'always', got {out_of_domain!r}")
    chosen = all_forms(ops)
    if forms is not None:
        allowed = set(forms)
        for pair in allowed:
            if pair[0] not in op_table or pair[1] not in forms_of(pair[0]):
                raise ValueError(f"not an (op, form) pair of the registry: {pair!r}")
        chosen = tuple(pair for pair in chosen if pair in allowed)
    return _programs(_table(chosen), max_steps, max_inputs, out_of_domain)
