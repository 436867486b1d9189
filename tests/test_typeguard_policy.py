"""The typeguard pass's own machinery: which verdicts it may remember, and which tests it may leave out."""

from __future__ import annotations

import json
import numbers
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import pytest
from _scripts import load_script
from hypothesis.strategies import DrawFn
from typeguard import TypeCheckError, TypeCheckMemo

from refgrad import Value
from refgrad.ops.spec import N

policy = load_script("_typeguard_policy")
repeats = load_script("typeguard_repeats")


NO_NAMES: frozenset[str] = frozenset()


class Pair(NamedTuple):
    first: float
    second: float


class HasData(Protocol):
    data: float


@pytest.mark.parametrize(
    ("annotation", "names"),
    [
        (float, NO_NAMES),
        (Value, NO_NAMES),
        (None, NO_NAMES),
        (typing.Any, NO_NAMES),
        (float | Value, NO_NAMES),
        (typing.Optional[Value], NO_NAMES),  # noqa: UP045 (the typing.Union spelling on purpose)
        (N, None),  # a rule's number type: float, or the NodeLike protocol, which reads the value's attributes
        (typing.ForwardRef("Value", module="refgrad.value"), frozenset({"Value"})),
        (typing.ForwardRef("Value"), None),  # resolved in the caller's globals: not remembered
        (numbers.Real, None),  # an ABC: registration, not the class hierarchy alone
        (HasData, None),  # a protocol reads the value's attributes
        (Pair, None),  # a NamedTuple's fields are checked one by one
        (tuple[float, ...], None),  # a container's items are checked
        (list[Value], None),
        (Literal[1], None),
        (float | tuple[float, ...], None),
    ],
)
def test_only_verdicts_decided_by_the_class_are_remembered(annotation: object, names: frozenset[str] | None) -> None:
    """A pass is remembered only where every value of the same class would pass too."""
    assert policy.class_decided_names(annotation) == names


def test_a_remembered_pass_never_hides_a_failure() -> None:
    """After floats pass ``float | None``, a str is still checked in full and fails; its class is not remembered."""
    memo = TypeCheckMemo(globals(), {})
    policy.check_remembering_class_verdicts(0.5, float | None, memo)
    assert (float | None, float) in policy._passed
    with pytest.raises(TypeCheckError):
        policy.check_remembering_class_verdicts("x", float | None, memo)
    assert (float | None, str) not in policy._passed
    # A forward reference shadowed by a local of the checked function is never taken from the memory.
    shadowed = TypeCheckMemo(globals(), {"Value": int})
    reference = typing.ForwardRef("Value", module="refgrad.value")
    policy.check_remembering_class_verdicts(Value(1.0), reference, TypeCheckMemo(globals(), {}))
    assert (reference, Value) in policy._passed
    with pytest.raises(TypeCheckError):
        policy.check_remembering_class_verdicts(Value(1.0), reference, shadowed)


def test_a_hypothesis_draw_is_checked_as_a_callable() -> None:
    """typeguard's DrawFn protocol check refuses every real draw (no __signature__): a draw must be callable."""
    memo = TypeCheckMemo(globals(), {})

    def draw(strategy: object) -> object:
        return strategy

    policy.check_remembering_class_verdicts(draw, DrawFn, memo)
    with pytest.raises(TypeCheckError, match="is not callable"):
        policy.check_remembering_class_verdicts(3, DrawFn, memo)


def _record(tmp_path: Path, records: dict[str, tuple[float, list[str]]]) -> Path:
    path = tmp_path / "flows.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_left_out_tests_only_repeat_flows_others_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Slowest first, a test is left out only while every flow it checks is still checked by one that stays."""
    flows = _record(
        tmp_path,
        {
            "slow_repeat": (90.0, ["f | x | float", "f | return | float"]),
            "slow_unique": (80.0, ["g | x | str"]),
            "twin_a": (30.0, ["h | x | int"]),
            "twin_b": (20.0, ["h | x | int"]),
            "cheap": (0.1, ["f | x | float", "f | return | float", "g | x | str"]),
            "quick_repeat": (0.5, ["f | x | float"]),  # below MIN_SECONDS: never listed
        },
    )
    listed = tmp_path / "repeats.txt"
    assert repeats.main([str(flows), str(listed)]) == 0
    # slow_unique goes too: its one flow is also checked by cheap, which stays (too quick to list);
    # of the twins, the slower goes and the other stays for their shared flow.
    assert repeats.read_list(listed) == ["slow_repeat", "slow_unique", "twin_a"]
    assert repeats.main([str(flows), str(listed), "--check"]) == 0
    assert "every flow is checked" in capsys.readouterr().out
    # A list that leaves out the only test of a flow fails the check and names the flow.
    listed.write_text("twin_a  # 30.0 s\ntwin_b  # 20.0 s\n", encoding="utf-8")
    assert repeats.main([str(flows), str(listed), "--check"]) == 1
    assert "h | x | int" in capsys.readouterr().out


IntRows = tuple[tuple[int, ...], ...]
_Anything = typing.TypeVar("_Anything")
_Bounded = typing.TypeVar("_Bounded", bound=float | Value)


def _generic(alone: _Anything, or_float: _Anything | float, items: Sequence[_Anything], bounded: _Bounded) -> _Bounded:
    """Annotations with type variables, read back by the shape test."""
    return bounded


def test_a_flow_tells_values_apart_only_where_the_check_could_tell() -> None:
    """Shapes: a tuple[X, ...] by the set of its items' shapes, a fixed tuple item by item, object as anything."""
    shape = policy._shape
    # Each item of a tuple[X, ...] is checked against X: their order and number change nothing.
    assert shape(((), (1, 2, 3), (4,)), IntRows) == shape(((5,), ()), IntRows)
    assert shape(((1,),), IntRows) != shape(((1,), ("a",)), IntRows)
    assert shape(((1,),), IntRows) != shape((), IntRows)  # nothing checked is not something checked
    # A fixed tuple is checked item by item.
    assert shape((1, "a"), tuple[int, str]) != shape(("a", 1), tuple[int, str])
    # A list is checked on its first item only (typeguard's default), against its item type.
    assert shape([1.0, "b"], list[float]) == shape([2.0], list[float]) != shape(["b", 1.0], list[float])
    assert shape({"a": 1}, dict[str, int]) != shape({"a": "b"}, dict[str, int])
    # Whatever is passed as object or Any passes: the flow says nothing of its class.
    assert shape(Value(1.0), object) == shape(None, typing.Any) == "*"
    assert shape([Value(1.0)], list[object]) == shape([None], list[object]) == "builtins.list[*]"
    # So does whatever is passed as a type variable with no bound, or a union with one; not with a bound.
    hints = typing.get_type_hints(_generic)
    assert shape(Value(1.0), hints["alone"]) == shape(None, hints["or_float"]) == "*"
    assert shape([Value(1.0)], hints["items"]) == shape([2.0], hints["items"]) == "builtins.list[*]"
    assert shape(Value(1.0), hints["bounded"]) != shape(2.0, hints["bounded"])
    # Without a plain container annotation (a union here), the classes of the first items tell.
    assert shape((1, 2), tuple[int, ...] | None) != shape((1, 2, 3), tuple[int, ...] | None)
