"""Program JSON from files: exact round trips, and hostile text refused with a ValueError naming the problem."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refgrad.oracle import Const, Program, Ref, Step
from refgrad.oracle.program import MAX_PROGRAM_CHARACTERS, parse_json

# Every finite float, with -0.0 and subnormals drawn often.
_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 0.0, 5e-324, -5e-324, 2.2250738585072009e-308, 1.7976931348623157e308]),
)


def _bits(values: tuple[float, ...]) -> tuple[bytes, ...]:
    return tuple(struct.pack("<d", value) for value in values)


def _numbers(program: Program) -> tuple[float, ...]:
    found = list(program.inputs)
    for step in program.steps:
        found += [operand.value for operand in step.operands if isinstance(operand, Const)]
        found += list(step.params)
    return tuple(found)


@given(inputs=st.lists(_FLOATS, min_size=1, max_size=4), constant=_FLOATS, exponent=_FLOATS)
def test_numbers_round_trip_bit_for_bit(inputs: list[float], constant: float, exponent: float) -> None:
    """Inputs, constants and parameters come back from JSON with the same bits: -0.0 and subnormals too."""
    program = Program(
        tuple(inputs),
        (
            Step("add", (Ref(0), Const(constant))),
            Step("mul", (Const(constant), Ref(len(inputs)))),
            Step("pow", (Ref(0),), (exponent,)),
        ),
    )
    loaded = Program.from_json(program.to_json())
    assert loaded == program
    assert _bits(_numbers(loaded)) == _bits(_numbers(program))


def _program_text(**replace: object) -> str:
    data: dict[str, object] = {"inputs": [1.0], "steps": [{"op": "neg", "operands": [{"node": 0}], "params": []}]}
    data.update(replace)
    return json.dumps(data)


def _step(op: object = "neg", operands: object = None, params: object = None) -> list[dict[str, object]]:
    return [{"op": op, "operands": [{"node": 0}] if operands is None else operands, "params": params or []}]


_HOSTILE = {
    "not JSON": ("{'inputs': [1.0]}", "not valid program JSON"),
    "truncated": ('{"inputs": [1.0], "steps": [', "do not match"),
    "a list at the top": ("[1.0, 2.0]", "a program must be an object"),
    "a string at the top": ('"steps"', "a program must be an object"),
    "null at the top": ("null", "a program must be an object"),
    "an extra key": (_program_text(code="__import__('os')"), "exactly the keys"),
    "a repeated key": ('{"inputs": [1.0], "inputs": [2.0], "steps": []}', "appears twice"),
    "inputs not a list": (_program_text(inputs={"0": 1.0}), "'inputs' must be a list"),
    "an input string": (_program_text(inputs=["1.0"]), "input 0 must be a number"),
    "an input bool": (_program_text(inputs=[True]), "input 0 must be a number"),
    "NaN": ('{"inputs": [NaN], "steps": []}', "NaN is not a finite number"),
    "Infinity": ('{"inputs": [-Infinity], "steps": []}', "-Infinity is not a finite number"),
    "a float overflowing": ('{"inputs": [1e400], "steps": []}', "input 0 must be a finite float, got inf"),
    "a giant integer": (_program_text(inputs=[10**400]), "input 0 must be a finite float, got an integer of 401"),
    "an integer too long to convert": ('{"inputs": [' + "9" * 5000 + "]}", "not valid program JSON"),
    "an unknown op": (_program_text(steps=_step("__import__")), "no op named '__import__'"),
    "an op not a string": (_program_text(steps=_step(7)), "'op' must be a string"),
    "too many operands": (_program_text(steps=_step(operands=[{"node": 0}, {"node": 0}])), "takes 1 operand"),
    "missing parameters": (_program_text(steps=_step("pow")), "takes parameters"),
    "a forward reference": (_program_text(steps=_step(operands=[{"node": 1}])), "refers to node 1, which is not"),
    "a reference out of range": (_program_text(steps=_step(operands=[{"node": 10**30}])), "not earlier"),
    "a negative reference": (_program_text(steps=_step(operands=[{"node": -1}])), "non-negative"),
    "a float reference": (_program_text(steps=_step(operands=[{"node": 0.0}])), "must be an integer"),
    "an unknown operand": (_program_text(steps=_step(operands=[{"eval": "1"}])), "an operand is"),
    "a step not an object": (_program_text(steps=[["neg", 0]]), "step 0 must be an object"),
    "no steps": (_program_text(steps=[]), "at least one step"),
    "no inputs": (_program_text(inputs=[]), "at least one input"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "nest deeper than 8"),
    "deep objects": ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nest deeper than 8"),
    "one giant string": ('"' + "a\\n" * (MAX_PROGRAM_CHARACTERS // 3 - 1) + '"', "a program must be an object"),
    "too long": (" " * (MAX_PROGRAM_CHARACTERS + 1), "more than the"),
}


@pytest.mark.parametrize(("text", "message"), list(_HOSTILE.values()), ids=list(_HOSTILE))
def test_hostile_program_json_is_a_value_error_naming_the_problem(text: str, message: str) -> None:
    """Each malformed or hostile text raises ValueError (never RecursionError, MemoryError or code execution)."""
    with pytest.raises(ValueError, match=message) as raised:
        Program.from_json(text)
    assert type(raised.value) is ValueError
    assert len(str(raised.value)) < 400  # a message, not an echo of the file


def test_brackets_inside_strings_do_not_count() -> None:
    """Brackets and escaped quotes inside JSON strings are text, not nesting."""
    assert parse_json('{"a": "x\\" [[[[[[[[[[[[", "b": "\\\\"}') == {"a": 'x" [[[[[[[[[[[[', "b": "\\"}


def test_text_must_be_a_string() -> None:
    """Bytes or other objects are a TypeError naming the type."""
    with pytest.raises(TypeError, match="must be a str, got bytes"):
        parse_json(b"{}")  # type: ignore[arg-type]  # the point of the test
