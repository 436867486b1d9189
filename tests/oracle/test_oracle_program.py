"""The program IR: validation, JSON round trips, the float forward and the printed script."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from typing import cast

import pytest
import torch
from hypothesis import given

from refgrad.oracle import Const, Program, Ref, Step, programs
from refgrad.oracle.engines import RefgradEngine


def _chain() -> Program:
    # x0 * x0, then tanh, then 2 ** that: a reused input, a method and a constant base.
    return Program(
        (0.5, -1.5),
        (
            Step("mul", (Ref(0), Ref(0))),
            Step("tanh", (Ref(2),)),
            Step("vpow", (Const(2.0), Ref(3))),
            Step("pow", (Ref(1),), (3.0,)),
        ),
    )


def test_shape_queries() -> None:
    """Consumers list every use, live marks what reaches the output, depth counts ops on the longest path."""
    program = _chain()
    assert program.node_count == 6
    assert program.output == 5
    assert program.consumers() == ((2, 2), (5,), (3,), (4,), (), ())
    assert program.live() == (False, True, False, False, False, True)
    assert program.depth() == 1
    assert program.ops() == frozenset({"mul", "tanh", "vpow", "pow"})
    deeper = Program((1.0,), (Step("exp", (Ref(0),)), Step("log", (Ref(1),)), Step("neg", (Ref(2),))))
    assert deeper.depth() == 3


@pytest.mark.parametrize(
    ("inputs", "steps", "message"),
    [
        ((), (Step("neg", (Ref(0),)),), "at least one input"),
        ((1.0,), (), "at least one step"),
        ((math.nan,), (Step("neg", (Ref(0),)),), "finite float"),
        ((1,), (Step("neg", (Ref(0),)),), "finite float"),
        ((1.0,), (Step("nope", (Ref(0),)),), "no op named 'nope'"),
        ((1.0,), (Step("neg", (Ref(0), Ref(0))),), "takes 1 operand"),
        ((1.0,), (Step("neg", (Ref(1),)),), "not earlier"),
        ((1.0,), (Step("pow", (Ref(0),)),), "takes parameters"),
        ((1.0,), (Step("add", (Const(1.0), Const(2.0))),), "form"),
        ((1.0,), (Step("vpow", (Ref(0), Const(2.0))),), "form"),
    ],
)
def test_invalid_programs_are_refused(inputs: tuple[float, ...], steps: tuple[Step, ...], message: str) -> None:
    """A malformed program is a ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        Program(inputs, steps)


def test_operands_are_checked() -> None:
    """Ref and Const refuse bad contents."""
    with pytest.raises(ValueError, match="non-negative"):
        Ref(-1)
    with pytest.raises(ValueError, match="finite"):
        Const(math.inf)


@given(programs(out_of_domain="sometimes"))
def test_json_round_trip(program: Program) -> None:
    """Every drawn program survives JSON exactly (floats included)."""
    assert Program.from_json(program.to_json()) == program


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"inputs": [1.0]}',
        '{"inputs": [true], "steps": []}',
        '{"inputs": [1.0], "steps": [{"op": "neg", "operands": [{"node": "0"}], "params": []}]}',
        '{"inputs": [1.0], "steps": [{"op": "neg", "operands": [{"x": 0}], "params": []}]}',
        '{"inputs": [1.0], "steps": [{"op": "neg", "operands": [{"node": 0}]}]}',
    ],
)
def test_malformed_json_is_refused(text: str) -> None:
    """Malformed JSON programs are ValueErrors."""
    with pytest.raises(ValueError):  # noqa: PT011  # the messages vary with what is wrong
        Program.from_json(text)


@given(programs())
def test_float_forward_matches_the_engine(program: Program) -> None:
    """Program.evaluate (the registry's float forwards) gives refgrad's node values exactly."""
    run = RefgradEngine().run(program)
    values = program.evaluate()
    assert run.values == values[: len(run.values)]


def _numbers(line: str) -> list[float]:
    cleaned = line.split(":", 1)[1].replace("[", " ").replace("]", " ").replace(",", " ")
    return [float(word) for word in cleaned.split()]


@given(programs(max_steps=8))
def test_script_reproduces_engine_and_torch(program: Program) -> None:
    """The printed script runs standalone and prints the engine's and torch's value and input gradients."""
    engine = RefgradEngine()
    run = engine.run(program)
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(engine.script(program), "<oracle script>", "exec"), namespace)  # the script is the product
    engine_line, torch_line = out.getvalue().splitlines()
    if run.failure is not None:
        assert engine_line.startswith(f"engine: {run.failure.exception} ")
        return
    inputs = range(len(program.inputs))
    assert _numbers(engine_line) == [run.values[-1], *(run.gradients[i] for i in inputs)]
    torch_numbers = _numbers(torch_line)
    assert len(torch_numbers) == 1 + len(program.inputs)
    # The torch half computes the same function: its value agrees with torch run by hand.
    tensors = [torch.tensor(v, dtype=torch.float64) for v in program.inputs]
    f = cast("Callable[..., torch.Tensor]", namespace["f"])
    assert torch_numbers[0] == pytest.approx(f(*tensors).item(), rel=0, abs=0, nan_ok=True)


def test_script_spells_every_form() -> None:
    """Negative constants are parenthesized, c ** y uses the number on the left, abs can be the builtin."""
    program = Program(
        (1.0,),
        (
            Step("vpow", (Const(-2.0), Ref(0))),
            Step("sub", (Const(-0.5), Ref(1))),
            Step("abs", (Ref(2),)),
            Step("pow", (Ref(3),), (-1.0,)),
        ),
    )
    lines = program.expression_lines(abs_method=False)
    assert lines == ["n1 = (-2.0) ** x0", "n2 = (-0.5) - n1", "n3 = abs(n2)", "n4 = n3 ** (-1.0)"]
    assert "n3 = n2.abs()" in program.expression_lines()
    assert str(program).startswith("program(x0=1.0): n1 = (-2.0) ** x0")


def test_pruning_keeps_only_what_the_output_depends_on() -> None:
    """Dead steps and unread inputs go, the rest is renumbered: a relu after eight unused doublings is one step."""
    doublings = tuple(Step("add", (Ref(k), Ref(k))) for k in range(8))
    program = Program((0.0,), (*doublings, Step("relu", (Ref(0),))))
    assert program.pruned() == Program((0.0,), (Step("relu", (Ref(0),)),))
    unread = Program((1.0, 2.0, 3.0), (Step("neg", (Ref(2),)), Step("mul", (Ref(3), Const(2.0)))))
    assert unread.pruned() == Program((3.0,), (Step("neg", (Ref(0),)), Step("mul", (Ref(1), Const(2.0)))))
    assert unread.pruned().pruned() == unread.pruned()


@given(programs(max_steps=12))
def test_a_pruned_program_has_the_same_output_and_gradients(program: Program) -> None:
    """The output's value, and the gradient of every input kept, are the same bits after pruning."""
    pruned = program.pruned()
    assert all(pruned.live())
    kept = [node for node, alive in enumerate(program.live()[: len(program.inputs)]) if alive]
    assert pruned.inputs == tuple(program.inputs[node] for node in kept)
    engine = RefgradEngine()
    full, small = engine.run(program), engine.run(pruned)
    if full.failure is not None:  # out of a domain, perhaps at a step the output does not use
        return
    assert small.failure is None
    assert math.copysign(1.0, full.values[-1]) == math.copysign(1.0, small.values[-1])
    assert full.values[-1] == small.values[-1]
    assert [full.gradients[node] for node in kept] == list(small.gradients[: len(kept)])


def test_numbered_steps_and_arguments_look_operands_up_as_the_nodes_are_numbered() -> None:
    """Each step with its node (after the inputs); arguments: the caller's entries for nodes, numbers for constants."""
    program = Program((2.0, 3.0), (Step("mul", (Ref(0), Const(4.0))), Step("add", (Ref(2), Ref(1)))))
    assert [(node, step.op) for node, step in program.numbered_steps()] == [(2, "mul"), (3, "add")]
    values = program.evaluate()
    assert [step.arguments(values) for _, step in program.numbered_steps()] == [(2.0, 4.0), (8.0, 3.0)]
    names = ["x0", "x1", "n2", "n3"]
    assert program.steps[1].arguments(names) == ("n2", "x1")
