"""The oracle's public functions refuse bad arguments with a TypeError or ValueError that names the argument."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from refgrad.oracle import (
    Program,
    Ref,
    RefgradEngine,
    Step,
    all_forms,
    check_program,
    load_engine,
    torch_reference,
    verify,
)
from refgrad.oracle.command import run_verify

_SQUARE = Program((0.5,), (Step("mul", (Ref(0), Ref(0))),))


def _call(function: Callable[..., object], *arguments: object, **options: object) -> Callable[[], object]:
    """``function`` called with these arguments, later; untyped on purpose, since the arguments are bad."""
    return lambda: function(*arguments, **options)


def _verify(**options: object) -> Callable[[], object]:
    engine = options.pop("engine", RefgradEngine())
    return _call(verify, engine, **{"examples": 1, **options})


_BAD_CALLS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("verify engine", _verify(engine=3), TypeError, "engine must be an oracle Engine"),
    ("verify ops str", _verify(ops="mul"), TypeError, "ops must be a list of op names, not a str: pass ['mul']"),
    ("verify ops empty", _verify(ops=[]), ValueError, "ops must name at least one op"),
    ("verify ops unknown", _verify(ops=["mul", "cosh"]), ValueError, "ops: no op named 'cosh'"),
    ("verify ops not names", _verify(ops=[3]), TypeError, "ops must hold op names (str), got int"),
    ("verify ops int", _verify(ops=3), TypeError, "ops must be a list of op names, got int"),
    ("verify examples bool", _verify(examples=True), TypeError, "examples must be an int, got bool"),
    ("verify examples float", _verify(examples=1.5), TypeError, "examples must be an int, got float"),
    ("verify examples zero", _verify(examples=0), ValueError, "examples must be at least 1"),
    ("verify seed", _verify(seed_value="0"), TypeError, "seed_value must be an int, got str"),
    ("verify order bool", _verify(order=True), TypeError, "order must be the int 1 or 2, got bool"),
    ("verify order 3", _verify(order=3), ValueError, "order must be 1 or 2, got 3"),
    ("verify max_steps", _verify(max_steps=0), ValueError, "max_steps must be at least 1"),
    ("verify progress", _verify(progress="yes"), TypeError, "progress must be a callable"),
    ("verify out_of_domain", _verify(out_of_domain="often"), ValueError, "out_of_domain must be 'never'"),
    ("check_program program", _call(check_program, "x", RefgradEngine()), TypeError, "program must be a"),
    ("check_program engine", _call(check_program, _SQUARE, "refgrad"), TypeError, "engine must be an oracle Engine"),
    (
        "check_program order",
        _call(check_program, _SQUARE, RefgradEngine(), order=1.0),
        TypeError,
        "order must be the int",
    ),
    (
        "check_program finite_differences",
        _call(check_program, _SQUARE, RefgradEngine(), finite_differences="no"),
        TypeError,
        "finite_differences must be a bool, got str",
    ),
    ("torch_reference program", _call(torch_reference, "x"), TypeError, "program must be a"),
    (
        "torch_reference second_order",
        _call(torch_reference, _SQUARE, second_order=1),
        TypeError,
        "second_order must be a bool",
    ),
    ("load_engine", _call(load_engine, 3), TypeError, "spec must be a str"),
    ("all_forms str", _call(all_forms, "tanh"), TypeError, "ops must be a list of op names, not a str"),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [case[1:] for case in _BAD_CALLS], ids=[c[0] for c in _BAD_CALLS]
)
def test_bad_arguments_are_refused_naming_the_argument(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    """Each bad argument: the documented exception type (not AttributeError or hypothesis's own), naming it."""
    with pytest.raises(error) as raised:
        call()
    assert type(raised.value) is error
    assert message in str(raised.value)


def test_good_arguments_still_run() -> None:
    """The checks refuse nothing valid: a list, a tuple or a generator of names, and a NumPy-free int count."""
    assert verify(RefgradEngine(), examples=2, ops=("mul",)).graphs == 2
    assert verify(RefgradEngine(), examples=2, ops=(name for name in ["tanh"])).graphs == 2
    assert check_program(_SQUARE, RefgradEngine(), order=2).passed


def test_ops_draws_exactly_the_ops_named() -> None:
    """Four ops named: the per-op table holds those four, each checked, and no other op."""
    ops = ["add", "mul", "tanh", "exp"]
    report = verify(RefgradEngine(), examples=20, seed_value=0, ops=ops)
    assert sorted(report.stats) == sorted(ops)
    assert all(stats.graphs > 0 and stats.gradient > 0 for stats in report.stats.values()), report.stats


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"examples": True}, "--examples must be an int, got bool"),
        ({"examples": 2.5}, "--examples must be an int, got float"),
        ({"seed": "0"}, "--seed must be an int, got str"),
        ({"order": True}, "--order must be the int 1 or 2, got bool"),
        ({"timeout": "5"}, "--timeout must be a number of seconds, got str"),
        ({"ops": ["mul"]}, "--ops must be a str of comma-separated op names, got list"),
    ],
)
def test_run_verify_refuses_bad_arguments_as_usage_errors(options: dict[str, object], message: str) -> None:
    """run_verify (the command line's function) turns a badly typed argument into exit 2 and one line naming it."""
    out, err = io.StringIO(), io.StringIO()
    arguments: dict[str, object] = {"examples": 1, "seed": 0, "ops": None, **options}
    run: Callable[..., int] = run_verify
    status = run("refgrad", out=out, err=err, database=None, **arguments)
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith(f"refgrad: error: {message}")
    assert err.getvalue().count("\n") == 1
