"""What the run-time type-checked run (``nox -s tests_typeguard``) does with a value that breaks an annotation.

typeguard instruments every function of ``refgrad``: arguments, return values and annotated
assignments are checked against the annotations as the suite runs. Every mismatch is an error,
with one exception: an argument passed *into* refgrad directly by a test. The tests pass
mistyped arguments on purpose (``type: ignore`` for the static checkers) to check that refgrad
rejects them with its own clear ``TypeError`` or ``ValueError``; typeguard would otherwise get
there first. Those calls are let through, and listed at the end of the run so they can be read.
A mismatch between two refgrad functions, or in anything refgrad returns, still fails the test.

Loaded with ``-p tests._typeguard_policy`` and named by ``--typeguard-typecheck-fail-callback``.

Two more things make the run fit in minutes without checking less:

- **Verdicts that follow from a class are remembered.** A training loop asks typeguard the same
  question millions of times ("is this ``Value`` a ``float | Value``?"), and the answer can only
  change with the value's class when the annotation is a plain class, ``None``, ``Any``, a union or
  a type variable made of those, or a forward reference to one in a named module. For those, a
  pass is remembered per (annotation, class) and the next value of that class is let through
  without asking again. Everything else (containers, protocols, literals, callables, classes
  with a metaclass such as ABCs) is checked in full every time, and a failure is never
  remembered: each one reaches the callback below.
- **Worker processes report back.** Under pytest-xdist each worker checks its share of the tests;
  what it let through is sent to the controller, which lists the whole run's.

``--typeguard-flows PATH`` writes what the run checked: every distinct (function, argument or
return value, the shape of the value: what of it the check can depend on, see ``_shape``) that
typeguard saw. ``nox -s typeguard_flows`` compares the default pass with the whole fast suite by it.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import re
import sys
import time
import types
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Protocol

import pytest
import typeguard._checkers
import typeguard._functions
from hypothesis.strategies import DrawFn
from typeguard import TypeCheckError, TypeCheckMemo

__all__ = [
    "check_remembering_class_verdicts",
    "check_unless_a_test_passed_it",
    "class_decided_names",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_protocol",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_testnodedown",
]

_tolerated: Counter[str] = Counter()
# 'argument "x" (str) ...' or, inside a container, 'key 'a' of argument "grads" (dict) ...'.
_ARGUMENT = re.compile(r'(^|of )argument "')


def _instrumented_frame(memo: TypeCheckMemo) -> FrameType | None:
    """The frame of the checked function: the innermost one running in the module the memo belongs to."""
    frame: FrameType | None = inspect.currentframe()
    while frame is not None and frame.f_globals is not memo.globals:
        frame = frame.f_back
    return frame


def check_unless_a_test_passed_it(error: TypeCheckError, memo: TypeCheckMemo) -> None:
    """Raise ``error``, unless it is about an argument that a test (not refgrad) passed in."""
    message = str(error)
    if message.startswith("the return value (NotImplementedType)"):
        # An operator declining its operand: the typing spec allows NotImplemented whatever the return annotation.
        return
    if not _ARGUMENT.search(message.splitlines()[0]):
        raise error  # a return value or an annotated assignment: refgrad's own doing
    frame = _instrumented_frame(memo)
    caller = frame.f_back if frame is not None else None
    if caller is None:
        raise error
    caller_module = str(caller.f_globals.get("__name__", ""))
    if caller_module == "refgrad" or caller_module.startswith("refgrad."):
        raise error  # one refgrad function passing another what its annotation excludes: a bug
    assert frame is not None
    function = f"{frame.f_globals.get('__name__')}.{frame.f_code.co_qualname}"
    _tolerated[f"{function}: {error}".splitlines()[0]] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the mistyped arguments the tests passed into refgrad on purpose."""
    if not _tolerated:
        return
    terminalreporter.section("typeguard: mistyped arguments passed in by tests (refgrad's own checks ran)")
    for line, count in sorted(_tolerated.items()):
        terminalreporter.write_line(f"{count:5d} x {line}")
    terminalreporter.write_line(f"{sum(_tolerated.values())} call(s), {len(_tolerated)} distinct")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--typeguard-flows PATH`` writes the flows the run checked; ``--typeguard-leave-out PATH`` names repeats."""
    parser.addoption("--typeguard-flows", metavar="PATH", help="write every distinct type flow typeguard checked")
    parser.addoption(
        "--typeguard-leave-out",
        metavar="PATH",
        help="leave out the tests listed there, whose every flow other tests check (tests/typeguard_repeats.py)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests ``--typeguard-leave-out`` lists (each one's flows are all checked by others)."""
    path: str | None = config.getoption("--typeguard-leave-out")
    if path is None:
        return
    # The list's format (tests/typeguard_repeats.py writes it): "# comment" lines, "node id  # seconds" lines.
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    listed = {line.split("  #")[0].strip() for line in lines if line.strip() and not line.startswith("#")}
    left_out = [item for item in items if item.nodeid in listed]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.nodeid not in listed]


def pytest_configure(config: pytest.Config) -> None:
    """With ``--typeguard-flows``: record each checked argument and return value (before refgrad is imported)."""
    if config.getoption("--typeguard-flows") is not None:
        _record_flows()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand a worker's findings to the pytest-xdist controller; in the controller (or alone), write the flows."""
    workeroutput: dict[str, object] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["typeguard_tolerated"] = dict(_tolerated)
        workeroutput["typeguard_flows"] = _flow_records()
        return
    path: str | None = session.config.getoption("--typeguard-flows")
    if path is not None:
        Path(path).write_text(json.dumps(_flow_records(), indent=1) + "\n", encoding="utf-8")


class _WorkerNode(Protocol):
    workeroutput: dict[str, object]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown (and never called) without it
def pytest_testnodedown(node: _WorkerNode, error: object) -> None:
    """In the pytest-xdist controller: add a finished worker's tolerated calls to the run's list."""
    received = node.workeroutput.get("typeguard_tolerated", {})
    assert isinstance(received, dict)
    for line, count in typing.cast("dict[str, int]", received).items():
        _tolerated[line] += count
    received_flows = node.workeroutput.get("typeguard_flows", {})
    assert isinstance(received_flows, dict)
    for nodeid, record in typing.cast("dict[str, tuple[float, list[str]]]", received_flows).items():
        _seconds[nodeid], flows = record
        _flows.setdefault(nodeid, set()).update(flows)


def _flow_records() -> dict[str, tuple[float, list[str]]]:
    return {nodeid: (_seconds.get(nodeid, 0.0), sorted(flows)) for nodeid, flows in sorted(_flows.items())}


# What the run checked, with --typeguard-flows: per test, its seconds and its flows
# ("module.function | argument | class[first items]").
_flows: dict[str, set[str]] = {}
_seconds: dict[str, float] = {}
# The flows of the test now running (a one-item list, replaced per test).
_current: list[set[str]] = [set()]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> typing.Generator[None, object, object]:
    """With ``--typeguard-flows``: attribute the flows checked while a test runs (setup included) to it."""
    if item.config.getoption("--typeguard-flows") is None:
        return (yield)
    _current[0] = _flows.setdefault(item.nodeid, set())
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        _seconds[item.nodeid] = time.perf_counter() - start
        _current[0] = set()


# What a flow says of a value its annotation accepts whatever it is (``object``, ``Any``).
_ANYTHING = "*"
# Annotations whose check typeguard makes on the first item only (its default collection strategy).
_FIRST_ITEM_ORIGINS = frozenset(
    {
        list,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Iterable,
        collections.abc.Collection,
        collections.abc.Set,
    }
)
_MAPPING_ORIGINS = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})


def _accepts_anything(annotation: object) -> bool:
    """``object``, ``Any``, a type variable with no bound or constraints, or a union with one: no check can fail."""
    if annotation is object or annotation is typing.Any:
        return True
    if isinstance(annotation, typing.TypeVar):
        return annotation.__bound__ is None and not annotation.__constraints__
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_anything(member) for member in typing.get_args(annotation))
    return False


def _shape(value: object, annotation: object = None, depth: int = 0) -> str:
    """What of ``value`` typeguard's check against ``annotation`` can depend on: its class and its items' shapes.

    Read with the annotation where it is a plain container type: a ``tuple[X, ...]`` by the set of
    its items' shapes (each item is checked against ``X``, in any order and number), a fixed
    tuple item by item, a list, set or mapping by its first item (all typeguard checks), and a
    value whose annotation accepts anything (``object``, ``Any``, a type variable with no bound, a
    union with one of those) as ``*``. Without such an
    annotation (a union, a forward reference, a nested item), by the class of the value and of
    its first items, as typeguard reads it: a tuple's first four, others' first.
    """
    if _accepts_anything(annotation):
        return _ANYTHING
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if depth >= 3 or (origin is None and depth >= 2):
        return name
    if isinstance(value, tuple):
        items: list[object] = list(typing.cast("tuple[object, ...]", value))
        if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
            shapes = sorted({_shape(item, arguments[0], depth + 1) for item in items})
            return f"{name}[{' | '.join(shapes)}, ...]"
        if origin is tuple and len(arguments) == len(items):
            return f"{name}[{', '.join(_shape(i, a, depth + 1) for i, a in zip(items, arguments, strict=True))}]"
        return f"{name}[{', '.join(_shape(item, None, depth + 1) for item in items[:4])}]"
    if isinstance(value, dict):
        first = next(iter(typing.cast("dict[object, object]", value).items()), None)
        if first is None:
            return f"{name}[]"
        if origin in _MAPPING_ORIGINS and len(arguments) == 2:
            return f"{name}[{_shape(first[0], arguments[0], depth + 1)}, {_shape(first[1], arguments[1], depth + 1)}]"
        return f"{name}[{_shape(first[0], None, depth + 1)}, {_shape(first[1], None, depth + 1)}]"
    if isinstance(value, list | set | frozenset):
        head = list(typing.cast("list[object]", value))[:1]
        element = arguments[0] if origin in _FIRST_ITEM_ORIGINS and len(arguments) == 1 else None
        return f"{name}[{', '.join(_shape(item, element, depth + 1) for item in head)}]"
    return name


def _record_flows() -> None:
    """Wrap typeguard's argument and return checks so that each distinct flow is recorded."""
    check_arguments = typeguard._functions.check_argument_types_internal
    check_return = typeguard._functions.check_return_type_internal

    def recording_arguments(
        func_name: str, arguments: dict[str, tuple[object, object]], memo: TypeCheckMemo
    ) -> typing.Literal[True]:
        module = memo.globals.get("__name__", "?")
        for name, (value, annotation) in arguments.items():
            _current[0].add(f"{module}.{func_name} | {name} | {_shape(value, annotation)}")
        return check_arguments(func_name, arguments, memo)

    def recording_return(func_name: str, retval: object, annotation: object, memo: TypeCheckMemo) -> object:
        _current[0].add(f"{memo.globals.get('__name__', '?')}.{func_name} | return | {_shape(retval, annotation)}")
        return check_return(func_name, retval, annotation, memo)

    replacements: dict[str, Callable[..., object]] = {
        "check_argument_types_internal": recording_arguments,
        "check_return_type_internal": recording_return,
    }
    for name, replacement in replacements.items():
        setattr(typeguard._functions, name, replacement)


# Verdicts that follow from the value's class alone.
# (Loaded twice, as the plugin and by its own tests, the second copy wraps typeguard's own check too.)
_full_check: typing.Final = getattr(
    typeguard._checkers.check_type_internal, "__wrapped__", typeguard._checkers.check_type_internal
)
# annotation -> the forward-reference names its verdict reads, or None when a pass says nothing of
# other values of the same class; computed once per annotation.
_decided_by_class: dict[object, frozenset[str] | None] = {}
# (annotation, class) -> the names its pass depends on, for every pass that follows from the class.
_passed: dict[tuple[object, type], frozenset[str]] = {}


class _NotYetResolvedError(Exception):
    """A forward reference whose module does not define its name (yet): ask again after the next pass."""


def class_decided_names(annotation: object) -> frozenset[str] | None:
    """The forward-reference names a pass of ``annotation`` depends on, or None if it depends on the value.

    An empty set means the check is an ``isinstance`` against fixed classes: every value of a
    class that passed once passes. A forward reference counts only when it names its module (it
    then resolves in that module, unless the checked function has a local of that name) and
    resolves to a class that counts. Raises ``_NotYetResolvedError`` while its module does not define it.
    """
    if annotation is None or annotation is typing.Any or annotation is object:
        return frozenset()
    if isinstance(annotation, type):
        # A plain class: typeguard's check is isinstance, which reads only the value's class. Not
        # a tuple subclass (a NamedTuple's fields are checked one by one) and no metaclass (ABCs,
        # protocols, TypedDicts and enums may read the value itself).
        protocol = bool(getattr(annotation, "_is_protocol", False))
        plain = type(annotation) is type and not protocol and not issubclass(annotation, tuple)
        return frozenset() if plain else None
    members: tuple[object, ...]
    if isinstance(annotation, typing.TypeVar):
        members = (annotation.__bound__,) if annotation.__bound__ is not None else annotation.__constraints__
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    elif isinstance(annotation, typing.ForwardRef):
        # Resolved as typing resolves it: the checked function's locals first (the caller makes sure
        # the name is not among them), then the named module's globals.
        module, name = annotation.__forward_module__, annotation.__forward_arg__
        if module is None or not name.isidentifier():
            return None
        if module not in sys.modules or name not in vars(sys.modules[module]):
            raise _NotYetResolvedError
        names = class_decided_names(vars(sys.modules[module])[name])
        return None if names is None else names | {name}
    else:
        return None
    found: set[str] = set()
    for member in members:
        names = class_decided_names(member)
        if names is None:
            return None
        found |= names
    return frozenset(found)


def check_remembering_class_verdicts(value: object, annotation: object, memo: TypeCheckMemo) -> None:
    """typeguard's ``check_type_internal``, skipping checks whose pass already follows from the value's class."""
    if annotation is DrawFn:
        # hypothesis's DrawFn protocol declares __signature__ (for its own docs), which the draw
        # functions hypothesis passes do not have: typeguard's protocol check would refuse every
        # real one, after building its signature from text (a third of the pass's time where
        # strategies draw). What a draw must be is a callable.
        if not callable(value):
            raise TypeCheckError("is not callable (a hypothesis DrawFn)")
        return
    cls = type(value)
    key = (annotation, cls)
    try:
        names = _passed.get(key)
    except TypeError:  # an unhashable annotation: never remembered
        _full_check(value, annotation, memo)
        return
    if names is not None and (not names or names.isdisjoint(memo.locals)):
        return
    _full_check(value, annotation, memo)  # raises on a failure, which is never remembered
    if annotation in _decided_by_class:
        names = _decided_by_class[annotation]
    else:
        try:
            names = _decided_by_class[annotation] = class_decided_names(annotation)
        except _NotYetResolvedError:
            return
    if names is not None and (not names or names.isdisjoint(memo.locals)) and value.__class__ is cls:
        _passed[key] = names


# typeguard's checkers call each other (a union checks its members) through this module global,
# and the instrumented functions reach it through typeguard._functions: both see the remembering one.
check_remembering_class_verdicts.__wrapped__ = _full_check  # type: ignore[attr-defined]  # read back above
for _module in (typeguard._checkers, typeguard._functions):
    setattr(_module, "check_type_internal", check_remembering_class_verdicts)  # noqa: B010 (not re-exported there)
