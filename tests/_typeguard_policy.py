"""What the run-time type-checked run (``nox -s tests_typeguard``) does with a value that breaks an annotation.

typeguard instruments every function of ``refgrad``: arguments, return values and annotated
assignments are checked against the annotations as the suite runs. Every mismatch is an error,
with one exception: an argument passed *into* refgrad directly by a test. The tests pass
mistyped arguments on purpose (``type: ignore`` for the static checkers) to check that refgrad
rejects them with its own clear ``TypeError`` or ``ValueError``; typeguard would otherwise get
there first. Those calls are let through, and listed at the end of the run so they can be read.
A mismatch between two refgrad functions, or in anything refgrad returns, still fails the test.

Loaded with ``-p tests._typeguard_policy`` and named by ``--typeguard-typecheck-fail-callback``.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from types import FrameType

import pytest
from typeguard import TypeCheckError, TypeCheckMemo

__all__ = ["check_unless_a_test_passed_it", "pytest_terminal_summary"]

_tolerated: Counter[str] = Counter()
# 'argument "x" (str) ...' or, inside a container, 'key 'a' of argument "grads" (dict) ...'.
_ARGUMENT = re.compile(r'(^|of )argument "')
_DRAW_FN_SIGNATURE = "is not compatible with the DrawFn protocol because it has no attribute named '__signature__'"


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
    if _DRAW_FN_SIGNATURE in message:
        # hypothesis's DrawFn protocol declares __signature__ (for its own docs), which the draw
        # functions hypothesis passes do not have: typeguard would refuse every real one.
        _tolerated["hypothesis DrawFn: " + message.splitlines()[0]] += 1
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
