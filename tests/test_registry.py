"""The op registry: every entry complete, self-consistent and the only source of each rule."""

from __future__ import annotations

import builtins
import inspect
import math
import sys

import pytest

from refgrad import DomainError, Value, apply, grad, hessian, jvp, registry
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.ops import Domain, Kink, N, OpSpec, Params, Partials, Spelling
from refgrad.ops.scalar import EXP_MAX
from refgrad.oracle.program import forms_of
from refgrad.oracle.surface import builder

REQUIRED_OPS = ("add", "sub", "mul", "div", "neg", "pow", "exp", "log", "tanh", "sigmoid", "relu", "abs")

# In-domain sample points per op: (inputs, params). Chosen away from kinks.
SAMPLES: dict[str, list[tuple[tuple[float, ...], Params]]] = {
    "add": [((1.5, -2.25), ()), ((1e3, 3e-3), ())],
    "sub": [((1.5, -2.25), ()), ((-7.0, 0.125), ())],
    "mul": [((1.5, -2.25), ()), ((-0.3, 0.7), ())],
    "div": [((1.5, -2.25), ()), ((-0.3, 0.7), ())],
    "neg": [((1.5,), ()), ((-0.25,), ())],
    "pow": [((1.5,), (3.0,)), ((0.7,), (0.5,)), ((-1.3,), (2.0,)), ((2.0,), (-1.5,)), ((0.4,), (0.0,))],
    "vpow": [((1.5, 2.5), ()), ((0.7, -0.5), ()), ((2.0, 0.0), ())],
    "exp": [((1.5,), ()), ((-3.0,), ())],
    "log": [((1.5,), ()), ((0.01,), ())],
    "tanh": [((0.5,), ()), ((-2.0,), ())],
    "sigmoid": [((0.5,), ()), ((-4.0,), ())],
    "relu": [((0.5,), ()), ((-4.0,), ())],
    "abs": [((0.5,), ()), ((-4.0,), ())],
}


def test_registry_has_the_required_ops_with_unique_names() -> None:
    """Iterating the registry yields a spec for every required op, each name once."""
    names = [spec.name for spec in registry]
    assert len(names) == len(set(names))
    for name in REQUIRED_OPS:
        assert name in names
        assert registry[name].name == name
    assert len(registry) == len(names)


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_every_entry_declares_everything(spec: OpSpec) -> None:
    """Arity, params, forward, partials, domain, kinks and formulas are all present and consistent."""
    assert spec.arity in (1, 2)
    assert all(name.strip() for name in spec.params)
    assert callable(spec.forward)
    assert callable(spec.partials)
    assert isinstance(spec.domain, Domain)
    assert spec.domain.description.strip()
    assert callable(spec.domain.contains)
    assert isinstance(spec.kinks, tuple)
    for kink in spec.kinks:
        assert isinstance(kink, Kink)
        assert 0 <= kink.input < spec.arity
        assert math.isfinite(kink.at)
        assert kink.convention.strip()
    assert spec.formula.strip()
    assert len(spec.partial_formulas) == spec.arity
    assert all(formula.strip() for formula in spec.partial_formulas)
    assert spec.symbol.strip()
    assert spec.name in SAMPLES, "add sample points for the new op to this test"


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_every_entry_names_the_torch_function_that_computes_it(spec: OpSpec) -> None:
    """The named torch counterpart exists and gives the entry's forward value at its sample points."""
    import torch  # the tests' environment has the oracle extra; the registry itself never imports torch

    assert spec.torch is not None
    assert spec.torch.startswith("torch.")
    function = getattr(torch, spec.torch.removeprefix("torch."))
    for inputs, params in SAMPLES[spec.name]:
        tensors = [torch.tensor(x, dtype=torch.float64) for x in inputs]
        expected = spec.forward(*inputs, *params)
        assert function(*tensors, *params).item() == pytest.approx(expected, rel=4 * sys.float_info.epsilon)


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_partials_return_one_entry_per_input_for_floats_and_nodes(spec: OpSpec) -> None:
    """A rule returns exactly arity partials, whether called with floats or with nodes."""
    for inputs, params in SAMPLES[spec.name]:
        output = spec.forward(*inputs, *params)
        assert len(spec.partials(inputs, output, params)) == spec.arity
        nodes = tuple(Value(x) for x in inputs)
        node_out = apply(spec, *nodes, params=params)
        symbolic = spec.partials(nodes, node_out, params)
        assert len(symbolic) == spec.arity
        numeric = spec.partials(inputs, output, params)
        for as_node, as_float in zip(symbolic, numeric, strict=True):
            value = as_node.data if isinstance(as_node, Value) else as_node
            assert value == pytest.approx(as_float, rel=1e-15, abs=1e-300)


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_the_spelling_computes_the_op_on_refgrad_and_micrograd_style_values(spec: OpSpec) -> None:
    """The entry's micrograd-style spelling, built on refgrad's Value and on the micrograd surface, is the op."""
    spelling = spec.spelling
    assert spelling is not None
    assert spelling.template.startswith("{0}") or spelling.template.startswith("-{0}")
    build = builder(spelling)
    for inputs, params in SAMPLES[spec.name]:
        expected = apply(spec, *(Value(x) for x in inputs), params=params).data
        for value_type in (Value, MicrogradValue):
            operands = [value_type(x) for x in inputs]
            built = build(*operands, *params)
            assert isinstance(built, value_type)
            assert built.data == expected, (spec.name, value_type)
        if spelling.method is not None:
            assert callable(getattr(Value, spelling.method))
            assert callable(getattr(MicrogradValue, spelling.method))
        if spelling.builtin is not None:
            through = getattr(builtins, spelling.builtin)(Value(inputs[0]))
            assert isinstance(through, Value)
            assert through.data == expected
    operand_texts = ["a", "b"][: spec.arity]
    text = spelling.template.format(*operand_texts, **{f"p{i}": "2.0" for i in range(len(spec.params))})
    assert all(name in text for name in operand_texts)


def test_a_spelling_that_is_neither_a_method_nor_a_python_operator_is_refused() -> None:
    """builder says which templates it knows rather than guess what ``{0} @ {1}`` means."""
    with pytest.raises(ValueError, match=r"^spelling '\{0\} @ \{1\}' names no method and is none of the operators"):
        builder(Spelling("{0} @ {1}"))


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_divides_says_which_partials_blow_up_at_a_tiny_operand(spec: OpSpec) -> None:
    """``divides``: some partial of the op overflows (or fails) at an operand of 1e-300, and no other op's does."""
    params = (-1.0,) if spec.params else ()  # x ** -1: the power rule divides by x
    blew_up = False
    for position in range(spec.arity):
        inputs = tuple(1e-300 if i == position else -1.0 if spec.name == "vpow" else 1.5 for i in range(spec.arity))
        if not spec.domain.contains(*inputs, *params):
            continue
        try:
            partials = spec.partials(inputs, spec.forward(*inputs, *params), params)
        except ArithmeticError:
            blew_up = True
            continue
        blew_up |= any(not math.isfinite(p) or abs(p) > 1e250 for p in partials)
    assert blew_up == spec.divides


def test_only_vpow_has_an_operand_that_is_always_a_node() -> None:
    """``node_only``: vpow's exponent (``x ** c`` with a number is pow); the forms drawn follow it."""
    assert {spec.name: spec.node_only for spec in registry if spec.node_only} == {"vpow": (1,)}
    assert forms_of("vpow") == (("node", "node"), ("const", "node"))
    assert ("node", "const") in forms_of("div")


def _gradient_difference(spec: OpSpec, inputs: tuple[float, ...], row: int, column: int) -> float:
    """d/d input ``column`` of d output / d input ``row``, by central differences of refgrad's gradients."""
    h = 1e-6

    def gradient_at(shift: float) -> float:
        moved = [Value(x + (shift if i == column else 0.0)) for i, x in enumerate(inputs)]
        return grad(apply(spec, *moved), moved)[row]

    return (gradient_at(h) - gradient_at(-h)) / (2 * h)


def test_constant_partials_mark_where_a_partials_own_derivative_is_lost() -> None:
    """vpow at y = 0: d/dx is the constant 0, so d/dy d/dx is 0 where the gradients' slope is 1 / x; elsewhere equal."""
    assert [spec.name for spec in registry if spec.constant_partials is not None] == ["vpow"]
    vpow = registry["vpow"]
    assert vpow.constant_partials is not None
    for inputs, _ in SAMPLES["vpow"]:
        x, y = Value(inputs[0]), Value(inputs[1])
        mixed = hessian(apply(vpow, x, y), (x, y))[0][1]  # d/dy of d/dx
        slope = _gradient_difference(vpow, inputs, 0, 1)
        if vpow.constant_partials(*inputs):
            assert inputs[1] == 0.0
            assert mixed == 0.0
            assert slope == pytest.approx(1 / inputs[0], rel=1e-6)
        else:
            assert mixed == pytest.approx(slope, rel=1e-6)


def _central_difference(spec: OpSpec, inputs: tuple[float, ...], params: Params, position: int) -> float:
    # Step ~ cbrt(eps) * scale balances truncation (h^2) against rounding (eps |f| / h). The
    # scale is the largest operand: rounding grows with |f| (1000 + 0.003), curvature with
    # 1 / x (log near 0), and the sample points keep both in check at this scale.
    h = math.cbrt(sys.float_info.epsilon) * (max(abs(x) for x in inputs) or 1.0)
    up = list(inputs)
    down = list(inputs)
    up[position] += h
    down[position] -= h
    return (spec.forward(*up, *params) - spec.forward(*down, *params)) / (2 * h)


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_partials_agree_with_central_differences(spec: OpSpec) -> None:
    """Each partial matches a central difference of the forward at in-domain points away from kinks."""
    for inputs, params in SAMPLES[spec.name]:
        output = spec.forward(*inputs, *params)
        partials = spec.partials(inputs, output, params)
        for position in range(spec.arity):
            expected = _central_difference(spec, inputs, params, position)
            assert partials[position] == pytest.approx(expected, rel=1e-7, abs=1e-9), (spec.name, inputs, position)


EDGE_VALUES = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    2.0,
    -3.0,
    1e-300,
    -1e-300,
    1e300,
    -1e300,
    sys.float_info.max,
    -sys.float_info.max,
    700.0,
    710.0,
    EXP_MAX,
    math.nextafter(EXP_MAX, math.inf),
    -745.2,
)
EXPONENTS = (0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, -0.5, 1.5, 1e3, -1e3)


def _forward_succeeds(spec: OpSpec, inputs: tuple[float, ...], params: Params) -> bool:
    try:
        result: object = spec.forward(*inputs, *params)
    except (ArithmeticError, ValueError):
        return False
    return isinstance(result, float) and math.isfinite(result)


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_domain_predicate_is_exactly_where_the_forward_is_finite(spec: OpSpec) -> None:
    """domain.contains agrees with the float forward on a grid of edge values (zeros, huge, boundaries)."""
    grid: list[tuple[tuple[float, ...], Params]] = []
    if spec.arity == 1:
        param_sets: list[Params] = [(c,) for c in EXPONENTS] if spec.params else [()]
        grid = [((x,), params) for x in EDGE_VALUES for params in param_sets]
    else:
        grid = [((x, y), ()) for x in EDGE_VALUES for y in (*EDGE_VALUES, *EXPONENTS)]
    for inputs, params in grid:
        assert spec.domain.contains(*inputs, *params) == _forward_succeeds(spec, inputs, params), (
            spec.name,
            inputs,
            params,
        )


@pytest.mark.parametrize("spec", list(registry), ids=lambda spec: spec.name)
def test_out_of_domain_nodes_raise_domain_error_naming_the_op(spec: OpSpec) -> None:
    """Building a node outside the domain raises DomainError with the op's name and the domain text."""
    for inputs, params in (
        (tuple([sys.float_info.max] * spec.arity), (2.0,) if spec.params else ()),
        (tuple([-2.0] * spec.arity), (0.5,) if spec.params else ()),
        (tuple([0.0] * spec.arity), (-1.0,) if spec.params else ()),
    ):
        if spec.domain.contains(*inputs, *params):
            continue
        with pytest.raises(DomainError) as caught:
            apply(spec, *inputs, params=params)
        message = str(caught.value)
        assert spec.name in message
        assert spec.domain.description in message


def test_kink_conventions_follow_pytorch() -> None:
    """relu'(0) = 0 and abs'(0) = 0, as declared in their kinks and as computed."""
    for name in ("relu", "abs"):
        spec = registry[name]
        assert [kink.at for kink in spec.kinks] == [0.0]
        x = Value(0.0)
        assert grad(apply(spec, x), x) == (0.0,)
    x = Value(0.0)
    assert grad(x**0, x) == (0.0,)  # PyTorch: d/dx x ** 0 is 0, even at 0


def _hypot_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    x, y = inputs
    return (x / output, y / output)


def _hypot_finite(x: float, y: float) -> bool:
    return math.isfinite(math.hypot(x, y))


HYPOT: OpSpec = OpSpec(
    name="hypot",
    arity=2,
    params=(),
    forward=math.hypot,
    partials=_hypot_partials,
    domain=Domain("all reals with hypot(x, y) finite", _hypot_finite),
    kinks=(Kink(0, 0.0, "undefined at the origin"),),
    formula="sqrt(x**2 + y**2)",
    partial_formulas=("x / hypot(x, y)", "y / hypot(x, y)"),
    symbol="hypot",
    torch="torch.hypot",
)


def test_a_new_op_needs_no_change_to_differentiation() -> None:
    """An op defined outside the registry differentiates in reverse, forward and higher order."""
    x, y = Value(3.0), Value(4.0)
    r = apply(HYPOT, x, y)
    assert r.data == 5.0
    assert grad(r, (x, y)) == pytest.approx((0.6, 0.8), rel=1e-15)
    assert jvp(r, (x, y), (1.0, 2.0)) == pytest.approx(0.6 + 1.6, rel=1e-15)
    (dx,) = grad(r, (x,), create_graph=True)
    # d/dy (x / r) = -x y / r^3
    assert grad(dx, (y,)) == pytest.approx((-3.0 * 4.0 / 125.0,), rel=1e-14)


def test_apply_validates_its_arguments() -> None:
    """apply() names the op and what is wrong with the call."""
    x = Value(1.0)
    with pytest.raises(TypeError, match="takes 2 input"):
        apply(registry["mul"], x)
    with pytest.raises(TypeError, match="parameters"):
        apply(registry["pow"], x)
    with pytest.raises(TypeError, match="OpSpec"):
        apply("mul", x, x)  # type: ignore[call-overload]  # deliberately wrong input
    with pytest.raises(TypeError, match="input 1"):
        apply(registry["mul"], x, "2")  # type: ignore[call-overload]  # deliberately wrong input
    assert apply(registry["mul"], x, 2).data == 2.0


def test_registry_lookup_of_an_unknown_name_lists_the_known_ones() -> None:
    """registry['nope'] raises KeyError naming the known ops."""
    with pytest.raises(KeyError, match="mul"):
        registry["nope"]


def test_rules_are_the_only_derivatives_in_the_engine() -> None:
    """The node and differentiation modules contain no derivative formulas: they call spec.partials."""
    import refgrad.autodiff
    import refgrad.micrograd.engine
    import refgrad.value

    for module in (refgrad.value, refgrad.autodiff, refgrad.micrograd.engine):
        source = inspect.getsource(module)
        for forbidden in ("math.exp", "math.log", "math.tanh", "1 - out", "out.data *"):
            assert forbidden not in source, (module.__name__, forbidden)


def test_partials_protocol_is_satisfied_by_every_rule() -> None:
    """Every registry rule is accepted where a Partials is expected (checked by mypy too)."""
    rules: list[Partials] = [spec.partials for spec in registry]
    assert len(rules) == len(registry)


def test_check_name_accepts_the_registrys_names_and_names_the_bad_one() -> None:
    for name in registry.names:
        registry.check_name(name)  # no error
    known = ", ".join(registry.names)
    for bad in ("nope", 3, None):
        with pytest.raises(ValueError, match=r"^where: no op named") as raised:
            registry.check_name(bad, "where: ")
        assert str(raised.value) == f"where: no op named {bad!r}; known ops: {known}"
    with pytest.raises(ValueError, match=r"^no op named 'x'"):
        registry.check_name("x")
