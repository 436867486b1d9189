"""Reference 1: PyTorch autograd in float64, with an error model that says how close an engine must be.

Every registry op has one entry in :data:`TORCH_REFERENCES`: the torch function
that computes it, and how much rounding error one implementation of it makes
(``forward_u`` for its value, ``partial_u`` for one backward contribution
``cotangent * partial``, both in units of ``U = 2**-53``).

**The error model.** To first order, a computed quantity ``q`` (a node's value
or a gradient) differs from its exact value by ``sum_j c_j * d_j``, one term per
rounding ``j`` (each op's result on the way forward, each contribution on the
way back), where ``|d_j| <= rho_j`` (the bounds in the table) and ``c_j`` is how
``q`` responds to that rounding. Two correct implementations (the engine and
torch) therefore differ by at most ``2 * W`` with ``W = sum_j |c_j| * rho_j``.

The ``c_j`` are not computed one by one; they are *sampled*. The reference runs
with ``LANES`` lanes: lane 0 is torch's plain float64 computation, and in each
other lane every rounding site ``j`` multiplies its result by ``1 + s * rho_j``
with an independent random sign ``s``. Lane ``k`` then computes
``q + S_k`` with ``S_k = sum_j c_j * s_jk * rho_j``, so its deviation from lane
0 samples the same first-order sum with the worst-case magnitude at every site
and random signs. Because ``E[S_k**2] = sum_j (c_j * rho_j)**2`` and, by
Cauchy-Schwarz, ``W <= sqrt(N) * sqrt(sum_j (c_j * rho_j)**2)`` for ``N``
sites, the tolerance is::

    tolerance(q) = 2 * 2 * sqrt(N) * max_k |S_k|

(2 for two implementations, 2 for estimating the root-mean-square from 16
samples, ``sqrt(N)`` for the worst alignment of signs). The lanes compute in
float64 too, where an error of one rounding can itself be rounded away
(``1 + 2**-53`` is ``1``), so the sampled errors are enlarged ``2**10`` times
and the deviations scaled back; to first order that is exact. Everything that makes
scalar programs hard is in the lanes automatically: cancellation amplifies
``S_k`` exactly as it amplifies real rounding, a partial evaluated from a
slightly wrong forward value (``1 - tanh(x)**2`` near saturation) moves with it,
and a derivative whose sign flips within rounding shows up as disagreeing lanes.

Results below the smallest normal float may be flushed by one implementation and
kept (subnormal) by the other, so ops that can underflow inexactly also get an
absolute error of up to ``sys.float_info.min`` when their result is that small;
a gradient contribution in the subnormal range gets an absolute error of one
subnormal spacing (``2**-1074``), which no relative perturbation can express.

Three things are read off the lanes besides tolerances:

* **finiteness**: lane 0 says whether torch's result is finite: every node's
  value and the gradient of the output with respect to every node (inputs,
  constants and intermediate nodes, since refgrad differentiates them all). If
  other lanes disagree, the program sits within rounding of an overflow or a
  domain boundary and the domain comparison is skipped;
* **kinks**: where an op's operand lies on different sides of a kink (``relu``
  at 0) in different lanes, which derivative applies is decided by rounding, so
  gradient comparisons through that node are skipped (exact zeros, as in
  ``relu(0.0)``, are the same in every lane and still checked);
* the gradient tolerance of each input, which the finite-difference check adds.

**Second order** (``torch_reference(program, second_order=True)``): the same
lanes are differentiated twice. The first backward runs with
``create_graph=True``, so every sampled rounding (forward values, and each
contribution's factor on the way back) is part of the gradient's graph, and
differentiating each input's gradient again gives the Hessian in every lane.
A contribution's factor multiplies the second sweep through that edge as well,
and a forward value's perturbation moves every second-order partial read from
it, so lane ``k`` samples the first-order error of the Hessian the same way. The
second sweep makes roundings of its own, at every site of the first two passes
again; the lanes share one sign between a site's two roundings, so its count of
independent sites is doubled: ``tolerance = 2 * 2 * sqrt(2 * N) * max_k |S_k|``.

**Forward mode** makes the same first-order rounding errors as reverse mode, edge
by edge: forward mode rounds ``partial * tangent`` at each edge and the error
reaches the output scaled by the adjoint of the edge's head; reverse mode rounds
``cotangent * partial`` and the error reaches ``sum_i t_i * grad_i`` scaled by the
tangent of the edge's tail. Both give ``sum over edges |adjoint * partial *
tangent| * rho``. So the tolerance of a directional derivative ``sum_i t_i *
grad_i`` is read off the same lanes, as the spread of ``sum_i t_i * grad_i``
(:func:`directional_tolerance`), plus the rounding of that sum itself.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, cast

import torch
from torch.autograd import forward_ad

from refgrad.ops import OpSpec, registry
from refgrad.oracle._arguments import flag_argument, program_argument
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Program, Ref, Step, partials_at
from refgrad.oracle.rounding import OWN_FORWARD_U, OWN_PARTIAL_U, OWN_ROUNDING, PARTIAL_SPACINGS, ROUNDING, Rounding, U

__all__ = [
    "LANES",
    "OWN_FORWARD_U",
    "OWN_PARTIAL_U",
    "PARTIAL_SPACINGS",
    "TORCH_REFERENCES",
    "TorchReference",
    "TorchResult",
    "U",
    "check_torch_names",
    "directional_tolerance",
    "first_infinite_partial",
    "first_infinite_second_partial",
    "first_overflowing_edge_weight",
    "has_torch",
    "reference_for",
    "reference_of",
    "second_order_magnitudes",
    "torch_jvp",
    "torch_reference",
]

LANES: Final = 17
"""Lane 0 is torch's own result; lanes 1..16 carry sampled rounding errors."""

_TINY: Final = sys.float_info.min
_SUBNORMAL_SPACING: Final = 2.0**-1074
# Sampled errors are enlarged this much, and the deviations they cause scaled back: an
# error of one rounding applied in float64 can itself be rounded away (1 + 2**-53 is 1).
# To first order the deviation is linear in the errors, so the scaling is exact, and
# 2**10 rounding errors (about 1e-13 relative) keep the lanes well inside first order.
_ENLARGE: Final = 2.0**10
_IMPLEMENTATIONS: Final = 2.0  # engine and torch each round
_SAMPLING: Final = 2.0  # max over 16 lanes as an estimate of the root-mean-square
_SIGN_ROWS: Final = 4096
_TERM_ROUNDING: Final = 2.0  # one term of a Hessian entry, formed in any order: relative error 2 U


@dataclass(frozen=True, slots=True)
class TorchReference:
    """How torch computes one op, and the rounding error one implementation of it may make.

    ``forward(*operands, *params)`` works on float64 tensors; ``rounding`` is the op's entry in
    the shared table (:data:`~refgrad.oracle.rounding.ROUNDING`), read through the properties
    below. ``saved_output_u`` perturbs, for the op's own backward only, the result torch saved.
    ``hessian_nan(*operands, *params)`` is true where torch's second derivatives of the op are
    NaN by its own conventions (a ``torch.where`` whose discarded branch it still
    differentiates), where refgrad's are the derivatives of PyTorch's constant partials.
    """

    forward: Callable[..., torch.Tensor]
    rounding: Rounding
    hessian_nan: Callable[..., bool] | None = None

    @property
    def forward_u(self) -> float:
        """The relative error bound of the op's value, in :data:`U`."""
        return self.rounding.forward_u

    @property
    def partial_u(self) -> float:
        """The relative error bound of one backward contribution, in :data:`U`."""
        return self.rounding.partial_u

    @property
    def underflow_exact(self) -> bool:
        """Results below the smallest normal float are exact (no absolute underflow error)."""
        return self.rounding.underflow_exact

    @property
    def saved_output_u(self) -> float:
        """The relative error of the op's result as its own partial reads it, in :data:`U`."""
        return self.rounding.saved_output_u


def _zero_base_or_exponent(base: float, exponent: float) -> bool:
    """torch.pow(x, y) at x == 0 with y >= 0, or at y == 0: its Hessian is NaN there."""
    return (base == 0.0 and exponent >= 0.0) or exponent == 0.0


def _pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    return torch.pow(x, exponent)


_FUNCTIONS: Final[Mapping[str, Callable[..., torch.Tensor]]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "neg": torch.neg,
    "pow": _pow,
    "vpow": torch.pow,
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
}
TORCH_REFERENCES: Final[Mapping[str, TorchReference]] = MappingProxyType(
    {
        name: TorchReference(function, ROUNDING[name], hessian_nan=_zero_base_or_exponent if name == "vpow" else None)
        for name, function in _FUNCTIONS.items()
    }
)
"""Registry op name to its torch reference; one entry per op, checked against the registry by the tests."""


def reference_of(op: str) -> TorchReference:
    """torch's counterpart of ``op``: its :data:`TORCH_REFERENCES` entry, or one made from an op of the caller's.

    An op of the caller's own (:data:`~refgrad.oracle.optable.op_table`) is computed by the torch
    function its entry's ``torch`` names (``"torch.sin"``), with the rounding bounds
    :data:`OWN_FORWARD_U` and :data:`OWN_PARTIAL_U`; an entry with ``torch=None`` by a stand-in
    made of the entry itself (:func:`has_torch`), which the comparison does not take as a
    reference for that op. ``ValueError`` naming the op when its ``torch`` name names no torch function.
    """
    found = TORCH_REFERENCES.get(op)
    if found is not None:
        return found
    return _own_reference(op_table[op])


def reference_for(spec: OpSpec) -> TorchReference | None:
    """:func:`reference_of` for an entry that need not be in the run's table; None for ``torch=None``."""
    if spec in registry:
        return TORCH_REFERENCES[spec.name]
    return None if spec.torch is None else _own_reference(spec)


def has_torch(op: str) -> bool:
    """Whether torch computes ``op`` itself (every registry op; a caller's op whose entry names a torch function)."""
    return op in TORCH_REFERENCES or op_table[op].torch is not None


def check_torch_names() -> None:
    """``ValueError`` naming the first op of the caller's whose ``torch`` name names no torch function."""
    for spec in op_table.key:
        reference_of(spec.name)


@functools.cache
def _own_reference(spec: OpSpec) -> TorchReference:
    if spec.torch is None:
        forward: Callable[..., torch.Tensor] = functools.partial(_stand_in, spec)
    else:
        forward = _resolve(spec)
    return TorchReference(forward, OWN_ROUNDING)


def _resolve(spec: OpSpec) -> Callable[..., torch.Tensor]:
    """The torch function ``spec.torch`` names (``"torch.sin"``, ``"torch.special.expit"``)."""
    name = spec.torch or ""
    head, _, rest = name.partition(".")
    found: object = torch if head == "torch" else None
    for part in rest.split(".") if rest else ():
        found = getattr(found, part, None)
    if found is None or found is torch or not callable(found):
        raise ValueError(
            f"op {spec.name!r}: torch={name!r} names no torch function (write it as 'torch.NAME', e.g. 'torch.sin')"
        )
    function = cast("Callable[..., torch.Tensor]", found)
    operands = [torch.full((LANES,), 0.5, dtype=torch.float64) for _ in range(spec.arity)]
    try:
        result: object = function(*operands, *(0.5 for _ in spec.params))
    except Exception as error:  # whatever the named function raises: the entry names the wrong one
        raise ValueError(
            f"op {spec.name!r}: {name}({spec.arity} tensor(s), {len(spec.params)} param(s)) fails: {error}"
        ) from None
    if not isinstance(result, torch.Tensor) or result.shape != operands[0].shape:
        raise ValueError(f"op {spec.name!r}: {name} does not return one value per element (an elementwise function)")
    return function


def _float_forward(spec: OpSpec, args: Sequence[float], params: Sequence[float]) -> float:
    """``spec``'s float forward at ``args``; NaN outside its domain or where it fails (torch's convention)."""
    if not spec.domain.contains(*args, *params):
        return math.nan
    try:
        result: object = spec.forward(*args, *params)
    except OverflowError:
        return math.inf
    except (ArithmeticError, ValueError):
        return math.nan
    return float(result) if isinstance(result, float | int) else math.nan


def _lanes(tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    # Operands are lanes (LANES,) or single numbers (): the widest shape is every operand's.
    shape = max((tuple(t.shape) for t in tensors), key=len)
    return [t.expand(shape) for t in tensors], shape


def _elementwise(
    shape: tuple[int, ...], operands: Sequence[torch.Tensor], compute: Callable[[list[float]], list[float]], count: int
) -> list[torch.Tensor]:
    flat = [_floats(operand.detach().reshape(-1)) for operand in operands]
    rows = [compute([column[i] for column in flat]) for i in range(len(flat[0]))]
    return [torch.tensor([row[k] for row in rows], dtype=torch.float64).reshape(shape) for k in range(count)]


class _StandIn(torch.autograd.Function):
    """An op of the caller's without a torch counterpart, computed lane by lane from its own entry.

    It lets torch run the rest of the program; the comparison takes nothing it computes
    as a reference for the op itself (see :func:`has_torch`). First derivatives only.
    """

    @staticmethod
    def forward(
        ctx: Any,  # torch's FunctionCtx is untyped
        spec: OpSpec,
        params: tuple[float, ...],
        *operands: torch.Tensor,
    ) -> torch.Tensor:
        broadcast, shape = _lanes(operands)
        (result,) = _elementwise(shape, broadcast, lambda args: [_float_forward(spec, args, params)], 1)
        ctx.spec = spec
        ctx.params = params
        ctx.save_for_backward(*broadcast, result)
        ctx.save_for_forward(*broadcast, result)
        return result

    @staticmethod
    def _partials(ctx: Any) -> list[torch.Tensor]:
        *operands, result = ctx.saved_tensors
        spec: OpSpec = ctx.spec
        params: tuple[float, ...] = ctx.params
        shape = tuple(result.shape)

        def at(row: list[float]) -> list[float]:
            found = partials_at(spec, row[:-1], row[-1], params) if math.isfinite(row[-1]) else None
            return [math.nan] * (len(row) - 1) if found is None else found

        return _elementwise(shape, [*operands, result], at, len(operands))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # pyright: ignore[reportIncompatibleMethodOverride]  # torch declares backward(ctx, *grad_outputs)
        ctx: Any, gradient: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        partials = _StandIn._partials(ctx)
        return (None, None, *(gradient * partial for partial in partials))

    @staticmethod
    def jvp(  # pyright: ignore[reportIncompatibleMethodOverride]  # torch declares jvp(ctx, *grad_inputs)
        ctx: Any, _spec: None, _params: None, *tangents: torch.Tensor | None
    ) -> torch.Tensor:
        partials = _StandIn._partials(ctx)
        total = torch.zeros_like(partials[0])
        for tangent, partial in zip(tangents, partials, strict=True):
            if tangent is not None:
                total = total + tangent * partial
        return total


def _stand_in(spec: OpSpec, *arguments: torch.Tensor | float) -> torch.Tensor:
    operands = [a for a in arguments[: spec.arity] if isinstance(a, torch.Tensor)]
    params = tuple(float(a) for a in arguments[spec.arity :])
    result = _StandIn.apply(spec, params, *operands)  # type: ignore[no-untyped-call]  # torch leaves apply untyped
    return cast("torch.Tensor", result)


def _sign_rows() -> torch.Tensor:
    # Fixed signs: the error model is the same in every run, whatever the seed.
    generator = torch.Generator().manual_seed(0x5EED)
    signs = torch.randint(0, 2, (_SIGN_ROWS, LANES), generator=generator, dtype=torch.int64) * 2 - 1
    signs[:, 0] = 0
    return signs.to(torch.float64)


_SIGNS: Final = _sign_rows()
_ONES: Final = torch.ones(LANES, dtype=torch.float64)
_ZEROS: Final = torch.zeros(LANES, dtype=torch.float64)


class _BackwardRounding(torch.autograd.Function):
    """A rounding site on the way back: lane 0 passes through untouched, other lanes get their sampled error.

    Optionally records the (rounded) gradient arriving at program node ``node`` in ``sink``.
    """

    @staticmethod
    def forward(
        ctx: Any,  # torch's FunctionCtx is untyped
        x: torch.Tensor,
        factor: torch.Tensor,
        sink: dict[int, torch.Tensor] | None,
        node: int,
    ) -> torch.Tensor:
        ctx.factor = factor
        ctx.sink = sink
        ctx.node = node
        return x.clone()

    @staticmethod
    def backward(  # pyright: ignore[reportIncompatibleMethodOverride]  # torch declares backward(ctx, *grad_outputs)
        ctx: Any, gradient: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        rounded = gradient * ctx.factor
        arriving = gradient[0].item()
        if arriving != 0.0 and abs(arriving) < _TINY:
            # Below the normal range rounding is absolute (one subnormal spacing),
            # which a relative perturbation of a subnormal number cannot show.
            rounded = rounded + torch.sign(ctx.factor - 1.0) * (_SUBNORMAL_SPACING * _ENLARGE)
        if ctx.sink is not None:
            ctx.sink[ctx.node] = rounded
        return rounded, None, None, None


@dataclass(frozen=True, slots=True)
class TorchResult:
    """What torch says about one program, with the tolerances of the error model.

    ``values[i]`` and ``gradients[i]`` are lane 0 (plain torch float64) for
    node ``i``: its value and d output / d node ``i`` (``0.0`` for nodes the
    output does not depend on). ``value_tolerances`` and
    ``gradient_tolerances`` bound how far a correct engine may be from them.
    """

    values: tuple[float, ...]
    gradients: tuple[float, ...]
    value_tolerances: tuple[float, ...]
    gradient_tolerances: tuple[float, ...]
    finite: bool
    """Every value and every gradient (nodes and constants) is finite in lane 0."""
    nodes_finite: bool
    """Every node's value and gradient is finite in lane 0 (constants' gradients aside)."""
    finiteness_ambiguous: bool
    """Some lane disagrees with lane 0 about finiteness: within rounding of an overflow or a domain boundary."""
    first_non_finite_value: int | None
    """The first node whose value is not finite in lane 0, if any."""
    kink_ambiguous: tuple[int, ...]
    """Nodes whose op has a kink that different lanes fall on different sides of."""
    sites: int
    """Rounding sites N in the error model."""
    input_gradient_deviations: tuple[tuple[float, ...], ...] = ()
    """For each input, how far each error lane's d output / d input is from lane 0 (scaled back to one rounding)."""
    subnormal_allowance: float = 0.0
    """``2**-1074 * sum over edges |d output / d head|``: one absolute rounding per edge, amplified by its adjoint.

    Relative rounding cannot express the error of a tangent or a partial that
    is itself subnormal (forward mode's tangents can be where reverse mode's
    contributions are not); this bounds it.
    """
    hessian: tuple[tuple[float, ...], ...] = ()
    """``hessian[i][j]`` = d2 output / d input i d input j in lane 0; empty unless asked for (``second_order=True``)."""
    hessian_tolerances: tuple[tuple[float, ...], ...] = ()
    """How far a correct engine's Hessian may be from ``hessian``, entry by entry."""
    hessian_finiteness_ambiguous: bool = False
    """Some lane's Hessian disagrees with lane 0's about which entries are finite."""
    beyond_first_order: tuple[int, ...] = ()
    """Nodes whose op answers its operands' sampled errors nonlinearly (see :func:`_beyond_first_order`).

    There the error model's premise fails and its tolerances mean nothing: ``sin`` of an
    operand near 1e15 turns a one-ulp difference in the operand into any value in [-1, 1].
    """
    name: ClassVar[str] = "torch"

    def directional(self, program: Program, tangents: Sequence[float]) -> tuple[float, float]:
        """torch's forward mode along ``tangents`` (:func:`torch_jvp`) and its :func:`directional_tolerance`."""
        return torch_jvp(program, tangents), directional_tolerance(self, tangents)

    def first_infinite_partial(self, program: Program) -> int | None:
        """:func:`first_infinite_partial` of ``program``."""
        return first_infinite_partial(program)

    def ulps_of(self, node: int, got: float, *, value: bool) -> float | None:
        """None: torch's numbers are rounded, not exact (:attr:`~refgrad.oracle.checks.Check.ulps` measures them)."""
        return None


def _tolerance(lanes: torch.Tensor, sites: int) -> torch.Tensor:
    deviation = (lanes[:, 1:] - lanes[:, :1]).abs().amax(dim=1)
    return deviation * (_IMPLEMENTATIONS * _SAMPLING * math.sqrt(sites) / _ENLARGE)


def directional_tolerance(reference: TorchResult, tangents: Sequence[float]) -> float:
    """How far a correct engine's ``sum_i tangents[i] * d output / d input i`` may be from the exact one's torch value.

    The lanes' spread of the same combination (forward and reverse mode make
    the same first-order errors, see the module docstring), with the error
    model's factors, plus ``2 U sum_i |t_i * grad_i|`` for rounding the
    products and their sum, plus twice the subnormal allowance (tangents below
    the normal range round absolutely). Infinite where a lane's combination is not finite (a lane
    overflowed): no tolerance can be read off there, and callers skip the check as near an overflow.
    """
    if len(tangents) != len(reference.input_gradient_deviations):
        raise ValueError(f"one tangent per input: {len(reference.input_gradient_deviations)} inputs, {len(tangents)}")
    deviations = reference.input_gradient_deviations
    spread = 0.0
    for lane in range(LANES - 1):
        terms = [t * d[lane] for t, d in zip(tangents, deviations, strict=True)]
        if not all(math.isfinite(term) for term in terms):
            return math.inf  # math.fsum would raise on inf - inf
        spread = max(spread, abs(math.fsum(terms)))
    gradients = reference.gradients[: len(tangents)]
    combination = math.fsum(abs(t * g) for t, g in zip(tangents, gradients, strict=True))
    sampled = _IMPLEMENTATIONS * _SAMPLING * math.sqrt(reference.sites) * spread
    return sampled + 2.0 * U * combination + _IMPLEMENTATIONS * reference.subnormal_allowance


def _round_backward(
    x: torch.Tensor, factor: torch.Tensor, sink: dict[int, torch.Tensor] | None, node: int
) -> torch.Tensor:
    result = _BackwardRounding.apply(x, factor, sink, node)  # type: ignore[no-untyped-call]  # torch leaves apply untyped
    return cast("torch.Tensor", result)


def _floats(lanes: torch.Tensor) -> tuple[float, ...]:
    return tuple(cast("list[float]", lanes.tolist()))  # pyright: ignore[reportUnknownMemberType]  # torch: tolist() -> list[Any]


class _Lanes:
    """Builds one program on torch in all lanes, placing a rounding site wherever the error model has one."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.uses = [len(found) for found in program.consumers()]
        # For single-use nodes: the op that uses them, whose rule rounds the contribution they receive.
        self.consumer_op = [""] * program.node_count
        for step in program.steps:
            for operand in step.operands:
                if isinstance(operand, Ref):
                    self.consumer_op[operand.node] = step.op
        self.sink: dict[int, torch.Tensor] = {}
        self.sites = 0
        self.row = 0
        self.nodes: list[torch.Tensor] = []
        self.constants: list[torch.Tensor] = []
        self.leaves: list[torch.Tensor] = []
        self.kink_checks: list[tuple[int, torch.Tensor, float]] = []

    def signs(self) -> torch.Tensor:
        self.row += 1
        return _SIGNS[self.row % _SIGN_ROWS]

    def perturbation(self, u: float) -> torch.Tensor:
        self.sites += 1
        return 1.0 + (u * U * _ENLARGE) * self.signs()

    def backward_factor(self, node: int) -> torch.Tensor:
        # Several uses: each edge is its own site (see operand), so the node adds none.
        if self.uses[node] != 1:
            return _ONES
        return self.perturbation(reference_of(self.consumer_op[node]).partial_u)

    def add_input(self, node: int, value: float) -> torch.Tensor:
        leaf = torch.full((LANES,), value, dtype=torch.float64, requires_grad=True)
        self.leaves.append(leaf)
        self.nodes.append(_round_backward(leaf, self.backward_factor(node), self.sink, node))
        return leaf

    def operand(self, operand: Ref | Const, reference: TorchReference) -> torch.Tensor:
        if isinstance(operand, Const):
            constant = torch.full((LANES,), operand.value, dtype=torch.float64, requires_grad=True)
            self.constants.append(constant)
            return constant
        tensor = self.nodes[operand.node]
        if self.uses[operand.node] > 1:
            tensor = _round_backward(tensor, self.perturbation(reference.partial_u), None, operand.node)
        return tensor

    def add_step(self, node: int, step: Step) -> None:
        reference = reference_of(step.op)
        operands = [self.operand(operand, reference) for operand in step.operands]
        for kink in op_table[step.op].kinks:
            self.kink_checks.append((node, operands[kink.input], kink.at))
        raw = reference.forward(*operands, *step.params)
        # The op's rounding is applied to its result in place, through .data, so
        # that torch's own backward sees it too: exp, tanh, sigmoid and vpow
        # compute their partials from the result they saved, and an engine's
        # partial moves with its own rounded result.
        if reference.forward_u:
            raw.data.mul_(self.perturbation(reference.forward_u))
        tiny = abs(raw.data[0].item()) < _TINY
        if tiny and not reference.underflow_exact and all(t.data[0].item() != 0.0 for t in operands):
            self.sites += 1
            raw.data.add_((_TINY * _ENLARGE) * self.signs())
        self.nodes.append(_round_backward(raw, self.backward_factor(node), self.sink, node))
        if reference.saved_output_u:
            # After the copy just made: only the op's own backward sees this.
            raw.data.mul_(self.perturbation(reference.saved_output_u))


def torch_reference(program: Program, *, second_order: bool = False) -> TorchResult:
    """Run ``program`` on torch (float64) in :data:`LANES` lanes and read off values, gradients and tolerances.

    With ``second_order`` the gradients are differentiated again: the result
    carries the Hessian with respect to the inputs and its tolerances.
    """
    program = program_argument(program)
    second_order = flag_argument(second_order, "second_order")
    lanes = _Lanes(program)
    for node, value in enumerate(program.inputs):
        lanes.add_input(node, value)
    for node, step in program.numbered_steps():
        lanes.add_step(node, step)
    sites = max(lanes.sites, 1)
    if second_order:
        # autograd.grad, not backward(create_graph=True), which would tie each leaf to its own gradient.
        # allow_unused: a leaf the output does not depend on gets None (torch's stubs do not say so).
        found = cast(
            "tuple[torch.Tensor | None, ...]",
            torch.autograd.grad(
                [lanes.nodes[-1]], [*lanes.leaves, *lanes.constants], [_ONES], create_graph=True, allow_unused=True
            ),
        )
        constant_grads = [g.detach().unsqueeze(0) for g in found[len(lanes.leaves) :] if g is not None]
        # Differentiating again runs the rounding sites' backward again, which would overwrite the sink.
        first_sweep = dict(lanes.sink)
        lanes.sink = {}
    else:
        torch.autograd.backward([lanes.nodes[-1]], [_ONES])
        constant_grads = [c.grad.unsqueeze(0) for c in lanes.constants if c.grad is not None]
        first_sweep = lanes.sink
    hessian: tuple[tuple[float, ...], ...] = ()
    hessian_tolerances: tuple[tuple[float, ...], ...] = ()
    hessian_ambiguous = False
    if second_order:
        hessian_lanes = _second_derivatives(lanes.leaves, first_sweep)
        with torch.no_grad():
            count = len(lanes.leaves)
            flat = hessian_lanes.reshape(count * count, LANES)
            entry_finite = torch.isfinite(flat)
            hessian_ambiguous = bool((entry_finite != entry_finite[:, :1]).any())
            # The second sweep rounds again at every site: twice the independent roundings.
            tolerances = _tolerance(flat, 2 * sites).reshape(count, count)
            hessian = tuple(_floats(row) for row in hessian_lanes[:, :, 0])
            sampled = [_floats(row) for row in tolerances]
        magnitudes, allowances = _second_order_bounds(program)
        hessian_tolerances = tuple(
            tuple(
                tolerance + _IMPLEMENTATIONS * (_TERM_ROUNDING * U * magnitude + allowance)
                for tolerance, magnitude, allowance in zip(sampled_row, magnitude_row, allowance_row, strict=True)
            )
            for sampled_row, magnitude_row, allowance_row in zip(sampled, magnitudes, allowances, strict=True)
        )

    with torch.no_grad():
        value_lanes = torch.stack([node.detach() for node in lanes.nodes])
        gradient_lanes = torch.stack(
            [first_sweep[node].detach() if node in first_sweep else _ZEROS for node in range(program.node_count)]
        )
        node_finite = torch.isfinite(torch.cat([value_lanes, gradient_lanes])).all(dim=0)
        lane_finite = torch.isfinite(torch.cat([value_lanes, gradient_lanes, *constant_grads])).all(dim=0)
        value_finite = torch.isfinite(value_lanes[:, 0])
        first_bad = None if bool(value_finite.all()) else int(torch.nonzero(~value_finite)[0, 0])
        kink_ambiguous: list[int] = []
        for node, operand, at in lanes.kink_checks:
            side = torch.sign(operand - at)
            if bool((side != side[0]).any()):
                kink_ambiguous.append(node)
        value_tolerances = _tolerance(value_lanes, sites)
        adjoints = _floats(gradient_lanes[:, 0])
        # Each step's partials at lane 0's values, read by both bounds below (never those of an op under test).
        lane_zero = _floats(value_lanes[:, 0])
        local = [program.reference_partials(lane_zero, index) for index in range(len(program.steps))]
        rounding = _contribution_rounding(program, local, adjoints)
        gradient_tolerances = _tolerance(gradient_lanes, sites) + _IMPLEMENTATIONS * torch.tensor(
            rounding, dtype=torch.float64
        )
        input_lanes = gradient_lanes[: len(program.inputs)]
        deviations = (input_lanes[:, 1:] - input_lanes[:, :1]) / _ENLARGE
    return TorchResult(
        values=_floats(value_lanes[:, 0]),
        gradients=_floats(gradient_lanes[:, 0]),
        value_tolerances=_floats(value_tolerances),
        gradient_tolerances=_floats(gradient_tolerances),
        finite=bool(lane_finite[0]),
        nodes_finite=bool(node_finite[0]),
        finiteness_ambiguous=bool((lane_finite != lane_finite[0]).any()),
        first_non_finite_value=first_bad,
        kink_ambiguous=tuple(kink_ambiguous),
        sites=sites,
        input_gradient_deviations=tuple(_floats(row) for row in deviations),
        subnormal_allowance=_subnormal_allowance(program, local, adjoints),
        hessian=hessian,
        hessian_tolerances=hessian_tolerances,
        hessian_finiteness_ambiguous=hessian_ambiguous,
        beyond_first_order=_beyond_first_order(program, value_lanes, local, set(kink_ambiguous)),
    )


_FIRST_ORDER_SLACK: Final = 0.25
"""How far (as a share) a node's sampled deviations may stray from the linear response before the model fails."""


def _beyond_first_order(
    program: Program, value_lanes: torch.Tensor, local: Sequence[list[float] | None], kinks: set[int]
) -> tuple[int, ...]:
    """Nodes where the lanes leave the first-order regime the tolerances assume.

    The error model scales sampled roundings up by :data:`_ENLARGE` and reads the tolerances
    off the lanes' deviations, which is exact while every op responds linearly to its operands'
    deviations: ``dev(node) = sum_i partial_i * dev(operand_i) + its own rounding``. This checks
    that relation lane by lane, with ``local``, the partials at lane 0 (:meth:`Program.reference_partials`:
    the registry's, or for an op under test the slopes of its forward): a node whose deviation
    falls short of the linear part by more than :data:`_FIRST_ORDER_SLACK` of it, or moves the other
    way (beyond its own rounding), is beyond first order: there the lanes' spread, scaled back,
    would underestimate the error. (A node that moves more than linearly, as ``x * y`` at ``x = y =
    0`` does by the product of the two errors, only gets a larger tolerance than it needs.) Nodes
    at an ambiguous kink and non-finite lanes are left to their own checks. An op that oscillates
    (``sin`` of a large operand) breaks it; for the registry's ops it breaks where the enlarged
    errors cross a jump (``(-1.0) ** x`` at ``x = 1.8e308``, where a perturbed ``x`` overflows).
    """
    deviations = value_lanes - value_lanes[:, :1]
    found: list[int] = []
    for (node, step), partials in zip(program.numbered_steps(), local, strict=True):
        if partials is None or node in kinks or not bool(torch.isfinite(value_lanes[node]).all()):
            continue
        if op_table.is_extra(step.op) and not all(math.isfinite(partial) for partial in partials):
            found.append(node)  # an op under test whose forward has no slope at this scale (forward_slopes)
            continue
        linear = torch.zeros_like(deviations[node])
        # A partial is a float too: one that underflowed (to 0, say) is off by a few subnormal spacings.
        underflow = torch.zeros_like(deviations[node])
        finite = True
        for operand, partial in zip(step.operands, partials, strict=True):
            if isinstance(operand, Ref):
                finite = finite and math.isfinite(partial) and bool(torch.isfinite(deviations[operand.node]).all())
                if finite:
                    linear = linear + partial * deviations[operand.node]
                    underflow = underflow + PARTIAL_SPACINGS * _SUBNORMAL_SPACING * deviations[operand.node].abs()
        if not finite:
            continue
        own = (reference_of(step.op).forward_u * U * abs(value_lanes[node, 0].item()) + _TINY) * _ENLARGE
        allowance = underflow + 4.0 * own
        # Only where the node moved less than the linear response (or the other way): there the
        # scaled-back spread underestimates the error. Moving more (the product of two errors at
        # x * y with x = y = 0) only makes the tolerance larger than it need be.
        moved = deviations[node]
        short = linear.abs() * (1.0 - _FIRST_ORDER_SLACK) - moved.abs() > allowance
        reversed_sign = (moved * linear < 0.0) & (linear.abs() > allowance)
        if bool((short | reversed_sign).any()):
            found.append(node)
    return tuple(found)


def _times(first: float, second: float) -> float:
    # 0 * inf is 0 here: a term with an exactly zero factor is absent, whatever the other factor.
    return 0.0 if first == 0.0 or second == 0.0 else first * second


@dataclass(frozen=True, slots=True)
class _Structure:
    """Absolute local partials, tangents and adjoints of a program at torch's values (see second_order_magnitudes)."""

    firsts: list[list[float]]
    seconds: list[list[list[float]]]
    tangents: list[list[float]]
    adjoints: list[float]


def _structure(program: Program) -> _Structure:
    values = torch_reference_values(program)
    inputs = len(program.inputs)
    firsts: list[list[float]] = []
    seconds: list[list[list[float]]] = []
    for step in program.steps:
        operands = [
            torch.tensor(argument, dtype=torch.float64, requires_grad=True) for argument in step.arguments(values)
        ]
        result = reference_of(step.op).forward(*operands, *step.params)
        partials = torch.autograd.grad(result, operands, create_graph=True)
        firsts.append([abs(partial.item()) for partial in partials])
        rows: list[list[float]] = []
        for partial in partials:
            if not partial.requires_grad:
                rows.append([0.0] * len(operands))  # locally constant
                continue
            found = cast(
                "tuple[torch.Tensor | None, ...]",
                torch.autograd.grad(partial, operands, retain_graph=True, allow_unused=True),
            )
            # NaN: torch's second partial is undefined there (x ** y at x = y = 0); it reaches the Hessian
            # itself, where it is judged, so it adds nothing to the size of the terms.
            rows.append([0.0 if second is None or second.isnan() else abs(second.item()) for second in found])
        seconds.append(rows)
    tangents = [[1.0 if i == node else 0.0 for i in range(inputs)] for node in range(inputs)]
    for index, step in enumerate(program.steps):
        row = [0.0] * inputs
        for position, operand in enumerate(step.operands):
            if isinstance(operand, Ref):
                for i in range(inputs):
                    row[i] += _times(firsts[index][position], tangents[operand.node][i])
        tangents.append(row)
    adjoints = [0.0] * program.node_count
    adjoints[program.output] = 1.0
    for index in range(len(program.steps) - 1, -1, -1):
        node = inputs + index
        for position, operand in enumerate(program.steps[index].operands):
            if isinstance(operand, Ref):
                adjoints[operand.node] += _times(adjoints[node], firsts[index][position])
    return _Structure(firsts, seconds, tangents, adjoints)


def second_order_magnitudes(program: Program) -> list[list[float]]:
    """``M[i][j]``: the sum of the absolute values of the terms that make up d2 output / d input i d input j.

    By the chain rule, ``H_ij = sum over nodes n of adjoint_n * sum over
    operands a, b of d2 op_n / da db * J_ai * J_bj``, with ``J_ai`` = d a / d
    input i. ``M`` is the same sum with every factor replaced by its absolute
    value, and adjoints and tangents by their sums over paths of absolute
    products, all at torch's values (local partials from torch). How an
    implementation groups these terms is its own business (refgrad's ``div``
    reads its result, torch's does not); where they cancel, their size, not
    their sum, is the scale of its rounding error.
    """
    return _second_order_bounds(program)[0]


def _second_order_bounds(program: Program) -> tuple[list[list[float]], list[list[float]]]:
    """:func:`second_order_magnitudes`, and the subnormal allowance of each Hessian entry.

    The allowance is ``2**-1074 * sum over terms of |d2 op_n / da db| *
    max(1, |adjoint_n|) * max(1, |J_ai|) * max(1, |J_bj|)``: one absolute
    rounding of a product below the normal range, anywhere in a term, amplified
    at most by the term's other factors (each counted as at least 1). In
    refgrad's second sweep, ``adjoint_n * J_ai`` is the cotangent of the partial
    node d n / d a, and can be subnormal where the entry is not.
    """
    found = _structure(program)
    inputs = len(program.inputs)
    seconds, tangents, adjoints = found.seconds, found.tangents, found.adjoints
    magnitudes = [[0.0] * inputs for _ in range(inputs)]
    allowances = [[0.0] * inputs for _ in range(inputs)]
    for index, step in enumerate(program.steps):
        adjoint = adjoints[inputs + index]
        if adjoint == 0.0:
            continue  # the output does not depend on the node: its terms are absent, whatever its partials
        refs = [(position, o.node) for position, o in enumerate(step.operands) if isinstance(o, Ref)]
        for first_position, first_node in refs:
            for second_position, second_node in refs:
                second = seconds[index][first_position][second_position]
                if second == 0.0:
                    continue
                weight = _times(adjoint, second)
                amplified = second * max(1.0, adjoint)
                for i in range(inputs):
                    for j in range(inputs):
                        term = _times(_times(weight, tangents[first_node][i]), tangents[second_node][j])
                        magnitudes[i][j] += term
                        widest = amplified * max(1.0, tangents[first_node][i]) * max(1.0, tangents[second_node][j])
                        allowances[i][j] += _SUBNORMAL_SPACING * widest
    return magnitudes, allowances


def first_overflowing_edge_weight(program: Program) -> int | None:
    """The first node n with an operand a such that ``|adjoint_n| * |d a / d input i|`` overflows, if any.

    An engine that differentiates its partials as graphs (refgrad) meets that
    product in its second sweep, as the cotangent of the partial d n / d a; torch's
    double backward can avoid it (``grad / x`` instead of ``grad * (1 / x)``), so
    its Hessian can be finite where such an engine overflows. The second-order
    analogue of :func:`first_infinite_partial`.
    """
    found = _structure(program)
    inputs = len(program.inputs)
    for index, step in enumerate(program.steps):
        adjoint = found.adjoints[inputs + index]
        for operand in step.operands:
            if isinstance(operand, Ref) and any(
                not math.isfinite(_times(adjoint, tangent)) for tangent in found.tangents[operand.node]
            ):
                return inputs + index
    return None


def _contribution_rounding(
    program: Program, local: Sequence[list[float] | None], adjoints: Sequence[float]
) -> list[float]:
    """A bound, per node, on the error of its gradient from rounding each backward contribution, not sampled.

    The lanes round a contribution relative to the value the lane computed; where a node's value is
    ill-conditioned (``log`` of a number within rounding of 1), the lanes' enlarged errors move it
    far from lane 0 and their contributions with it, so their spread can miss the rounding of large
    contributions that cancel (``n / n`` sends ``1 / n`` and ``-n / n**2`` back to ``n``). This is
    the classical running bound instead: each contribution ``adjoint * partial`` rounds with its
    op's ``partial_u`` relative to its own size, and errors travel back through ``|partial|``, from
    lane 0's values and adjoints and the registry's partials. Where a partial is not finite the node
    gets no bound here (the lanes and the domain checks speak for it).

    Below the normal range rounding is absolute, not relative: a partial that underflows (``y ** -3``
    at ``y = 8e80`` has the partial ``-3 * y ** -4``, about 1.5 subnormal spacings) is off by up to
    ``partial_u`` spacings whatever its size, even rounded to exactly 0, and the product with the
    adjoint by half a spacing more. So each contribution of an op whose partials can underflow
    inexactly also carries ``(partial_u * |adjoint| + 1)`` spacings, which the partials behind it
    carry on. It is negligible unless they grow it a long way: in that chain of powers, to
    3.4e-246 at the input, which torch's float64 gradient (0.0) was off by, where finite
    differences found the true value.
    """
    bounds = [0.0] * program.node_count
    for index in range(len(program.steps) - 1, -1, -1):
        step = program.steps[index]
        node = len(program.inputs) + index
        partials = local[index]
        if partials is None:
            continue  # no finite result here, so no partials to bound (the domain checks speak)
        reference = reference_of(step.op)
        u = reference.partial_u * U
        spacings = 0.0 if reference.underflow_exact else reference.partial_u * abs(adjoints[node]) + 1.0
        floor = _SUBNORMAL_SPACING * spacings
        for operand, partial in zip(step.operands, partials, strict=True):
            if not isinstance(operand, Ref) or not math.isfinite(partial):
                continue
            carried = _times(abs(partial), bounds[node]) + u * abs(_times(adjoints[node], partial)) + floor
            if math.isfinite(carried):
                bounds[operand.node] += carried
    return bounds


def _subnormal_allowance(program: Program, local: Sequence[list[float] | None], adjoints: Sequence[float]) -> float:
    """Spacings a forward-mode (or second-order) result may lose to tangent products below the normal range.

    Each product of a tangent and a partial rounds absolutely there, by half a spacing, and an op's
    own rule can carry that rounding on through one of its partials: torch's jvp of ``a / b``
    divides the product ``(a / b) * tb`` by ``b`` (``1e-300 / (2 / x)`` at ``x = 8.8e9`` puts it
    near 1e-310, then divides it by 2e-10, and lost 61 ulps of a 5e-301 result). So each edge
    counts ``1 + sum |partial|`` spacings over its step's partials, times the step's adjoint.
    """
    total = 0.0
    for (node, step), partials in zip(program.numbered_steps(), local, strict=True):
        carried = 1.0 + sum(abs(p) for p in partials or () if math.isfinite(p))
        edges = sum(isinstance(operand, Ref) for operand in step.operands)
        total += _times(abs(adjoints[node]), edges * carried)
    return _SUBNORMAL_SPACING * total


def _second_derivatives(leaves: list[torch.Tensor], first_sweep: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """``[i, j, lane]``: d/d input j of the gradient of input i, in every lane (after a create_graph backward)."""
    count = len(leaves)
    rows: list[torch.Tensor] = []
    for node in range(count):
        gradient = first_sweep.get(node)
        if gradient is None or not gradient.requires_grad:
            rows.append(torch.zeros((count, LANES), dtype=torch.float64))  # constant: nothing to differentiate
            continue
        found = cast(
            "tuple[torch.Tensor | None, ...]",
            torch.autograd.grad([gradient], leaves, [_ONES], retain_graph=True, allow_unused=True),
        )
        rows.append(torch.stack([_ZEROS if g is None else g.detach() for g in found]))
    return torch.stack(rows)


# torch.autograd.forward_ad's functions are unannotated; these give them their documented types.
def _make_dual(primal: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    dual: torch.Tensor = forward_ad.make_dual(primal, tangent)  # pyright: ignore[reportUnknownMemberType]
    return dual


def _tangent(dual: torch.Tensor) -> torch.Tensor | None:
    tangent: torch.Tensor | None = forward_ad.unpack_dual(dual).tangent  # pyright: ignore[reportUnknownMemberType]
    return tangent


@functools.cache
def _load_forward_mode() -> None:
    """Load torch's forward-mode decompositions once, hiding the deprecation warning torch raises while doing so.

    torch 2.13 builds them with ``torch.jit.script`` when the first dual tensor
    is made and warns that ``torch.jit.script`` is deprecated: torch's business,
    not the oracle's, and an error under the tests' warning filters.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        one = torch.tensor(1.0, dtype=torch.float64)
        with forward_ad.dual_level():
            _make_dual(one, one)


def torch_jvp(program: Program, tangents: Sequence[float]) -> float:
    """The directional derivative of the output along ``tangents`` by torch's forward mode (dual tensors, float64).

    torch's forward-mode AD (``torch.autograd.forward_ad``) carries each node's
    tangent with its value, by torch's own forward-mode formulas. These are the
    formulas ``torch.func.jvp`` runs too (the same bits, checked on 6,000
    programs), without its function transform, which made a call cost half as
    much again (3.0 ms against 2.0 ms, on 1,500 random programs).
    """
    if len(tangents) != len(program.inputs):
        raise ValueError(f"torch_jvp needs one tangent per input: {len(program.inputs)} inputs, {len(tangents)}")
    _load_forward_mode()
    with forward_ad.dual_level():
        nodes = [
            _make_dual(torch.tensor(x, dtype=torch.float64), torch.tensor(float(t), dtype=torch.float64))
            for x, t in zip(program.inputs, tangents, strict=True)
        ]
        for step in program.steps:
            operands = [
                nodes[o.node] if isinstance(o, Ref) else torch.tensor(o.value, dtype=torch.float64)
                for o in step.operands
            ]
            nodes.append(reference_of(step.op).forward(*operands, *step.params))
        tangent = _tangent(nodes[-1])
    # No tangent: the output does not depend on the inputs through anything differentiable.
    return 0.0 if tangent is None else float(tangent.item())


def first_infinite_partial(program: Program) -> int | None:
    """The first node whose op has a local partial derivative that is not finite in torch, at torch's values.

    ``log``'s partial at ``x = 5e-324`` is ``1 / x``, which overflows, yet
    torch's gradient through it can be finite because torch divides the
    incoming gradient by ``x`` instead of multiplying it by ``1 / x``. An
    engine built on local partials (refgrad is) cannot reproduce that, and the
    comparison reports such programs separately.
    """
    values = torch_reference_values(program)
    for node, step in program.numbered_steps():
        operands = [
            torch.tensor(argument, dtype=torch.float64, requires_grad=True) for argument in step.arguments(values)
        ]
        result = reference_of(step.op).forward(*operands, *step.params)
        partials = torch.autograd.grad(result, operands)
        for partial in partials:
            if not bool(torch.isfinite(partial)):
                return node
    return None


def first_infinite_second_partial(program: Program) -> int | None:
    """The first node whose op has a local second partial derivative that is not finite in torch, at torch's values.

    The second-order analogue of :func:`first_infinite_partial`: ``x ** 1.5``'s
    partial ``1.5 * x ** 0.5`` has an infinite derivative at ``x = 0``, and an
    engine that differentiates its partials as graphs meets it even where a
    ``relu`` further on makes the Hessian 0 (torch masks there, it does not
    multiply by 0).
    """
    values = torch_reference_values(program)
    for node, step in program.numbered_steps():
        operands = [
            torch.tensor(argument, dtype=torch.float64, requires_grad=True) for argument in step.arguments(values)
        ]
        result = reference_of(step.op).forward(*operands, *step.params)
        partials = torch.autograd.grad(result, operands, create_graph=True)
        for partial in partials:
            if not partial.requires_grad:
                continue  # locally constant
            found = cast(
                "tuple[torch.Tensor | None, ...]",
                torch.autograd.grad(partial, operands, retain_graph=True, allow_unused=True),
            )
            if any(second is not None and not bool(torch.isfinite(second)) for second in found):
                return node
    return None


def torch_reference_values(program: Program) -> list[float]:
    """Every node's value computed by torch (float64), without gradients or lanes."""
    values = list(program.inputs)
    with torch.no_grad():
        for step in program.steps:
            operands = [torch.tensor(argument, dtype=torch.float64) for argument in step.arguments(values)]
            values.append(reference_of(step.op).forward(*operands, *step.params).item())
    return values
