"""Engines in any language: the JSON-lines protocol of ``verify --engine-cmd`` (docs/protocol.md).

An adapter is a program that speaks the protocol on its standard input and
output: it writes a handshake (``{"protocol": 1, "engine", "ops", "nodes",
"strict"}``), then answers each ``{"id", "program"}`` request with the output's
value and the inputs' gradients (``"nodes"``: every node's value and gradient
too) or an error, and exits on ``{"shutdown": true}`` or the end of its input.
:class:`CommandEngine` runs one with the machinery of a Python engine's worker
(:class:`~refgrad.oracle.worker.ChildEngine`: the time limit per program, a hang
or a crash recorded and the adapter restarted); an answer that breaks the
protocol raises :class:`AdapterError`, which ends the check: it is the
adapter's mistake, never a finding about the engine. :func:`protocol_check`
drives an adapter through a fixed set of programs and lists every such mistake.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, TextIO, cast

from refgrad.ops import registry
from refgrad.oracle.engines import EngineFailure, EngineRun, EngineSpecError, Stage
from refgrad.oracle.program import Const, Program, Ref, Step, forms_of
from refgrad.oracle.references import script_reference
from refgrad.oracle.worker import DEFAULT_TIMEOUT, STARTUP_TIMEOUT, ChildEngine, ChildProcess, timeout_argument

__all__ = [
    "PROTOCOL_VERSION",
    "SHUTDOWN_WAIT",
    "AdapterError",
    "CommandEngine",
    "conformance_programs",
    "protocol_check",
    "read_answer",
]

PROTOCOL_VERSION: Final = 1
"""The protocol version refgrad speaks (the handshake's ``protocol``)."""

SHUTDOWN_WAIT: Final = 5.0
"""Seconds an adapter has to exit after ``{"shutdown": true}`` before it is killed."""

_NON_FINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SHUTDOWN: Final = {"shutdown": True}


class AdapterError(BaseException):
    """An adapter broke the protocol (a line that is not JSON, a missing field, a wrong count).

    A ``BaseException``, like ``KeyboardInterrupt``: it ends a verification at once, through
    hypothesis (which would otherwise shrink it as a failure of the engine) and ``-j`` workers.
    ``str()`` is one line naming the adapter's mistake.
    """


def _number(raw: object, what: str) -> float:
    """A number of an answer: a JSON number, or ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(raw, float):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str) and raw in _NON_FINITE:
        return _NON_FINITE[raw]
    shown = "null" if raw is None else repr(raw)[:40]
    raise ValueError(f'{what} is {shown}, not a number (non-finite numbers are "NaN", "Infinity", "-Infinity")')


def _numbers(raw: object, count: int, what: str, counted: str) -> list[float]:
    if not isinstance(raw, list):
        raise ValueError(f"{what} must be a list of {count} numbers ({counted})")
    items = cast("list[object]", raw)
    if len(items) != count:
        raise ValueError(f"{what} has {len(items)} numbers; the program has {count} {counted}")
    return [_number(item, f"{what}[{index}]") for index, item in enumerate(items)]


def _same(a: float, b: float) -> bool:
    """The same double, sign of zero included (NaN is NaN)."""
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))


class _Handshake:
    """What an adapter's first line says, checked."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        """Read the fields; ``ValueError`` naming the first that is wrong."""
        version = fields.get("protocol")
        if version != PROTOCOL_VERSION or isinstance(version, bool):
            raise ValueError(f"its handshake says protocol {version!r}; refgrad speaks protocol {PROTOCOL_VERSION}")
        name = fields.get("engine")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("its handshake's 'engine' must be a non-empty string (the name the card uses)")
        ops = fields.get("ops")
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in cast("list[object]", ops)):
            raise ValueError("its handshake's 'ops' must be a list of op names")
        listed = cast("list[str]", ops)
        unknown = [op for op in listed if op not in registry.names]
        if unknown:
            raise ValueError(f"its handshake lists ops refgrad does not have: {', '.join(unknown)}")
        nodes, strict = fields.get("nodes", False), fields.get("strict", False)
        if not isinstance(nodes, bool) or not isinstance(strict, bool):
            raise ValueError("its handshake's 'nodes' and 'strict' must be true or false")
        self.name, self.ops, self.nodes, self.strict = name, frozenset(listed), nodes, strict


class CommandEngine(ChildEngine):
    """An engine in any language behind an adapter started with ``command`` (``verify --engine-cmd``).

    ``command`` is split into words as a POSIX shell would and run without a shell.
    Construction starts the adapter and reads its handshake (``EngineSpecError``, one
    line, if it cannot be started or its handshake is wrong); each :meth:`run` then has
    ``timeout`` seconds. A hang or a crash is a ``"process"`` failure and the adapter
    is started again; an answer that breaks the protocol raises :class:`AdapterError`.
    """

    _who = "the adapter"
    _crash_hint = ""

    def __init__(
        self, command: str, *, timeout: float = DEFAULT_TIMEOUT, startup_timeout: float = STARTUP_TIMEOUT
    ) -> None:
        """Start ``command`` and wait (up to ``startup_timeout`` s) for its handshake."""
        if not isinstance(command, str):
            raise TypeError(f"command must be a str, got {type(command).__name__}")
        try:
            argv = shlex.split(command)
        except ValueError as error:  # an unclosed quote
            raise ValueError(f"--engine-cmd {command!r} cannot be split into words: {error}") from None
        if not argv:
            raise ValueError("--engine-cmd needs a command: the adapter to start")
        super().__init__(timeout=timeout, startup_timeout=startup_timeout)
        self._command, self._argv = command, argv
        self._handshake_said = _Handshake({"protocol": 1, "engine": command, "ops": []})
        self._sent: tuple[int, Program] | None = None
        self._next_id = 0
        self._start_first()

    @property
    def command(self) -> str:
        """The command that starts the adapter."""
        return self._command

    def _spawn(self) -> ChildProcess:
        try:
            return ChildProcess(self._argv, os.environ)
        except OSError as error:
            reason = error.strerror or str(error)
            raise EngineSpecError(f"--engine-cmd {self._command!r}: cannot start {self._argv[0]!r}: {reason}") from None

    def _handshake(self, worker: ChildProcess) -> str | None:
        read = _read_handshake(worker, self._startup_timeout)
        if isinstance(read, str):
            return f"--engine-cmd {self._command!r}: {read}"
        self._handshake_said = read
        return None

    def _request_for(self, program: Program) -> Mapping[str, object]:
        self._next_id += 1
        self._sent = (self._next_id, program)
        return {"id": self._next_id, "program": program.to_dict()}

    def _answer(self, answer: dict[str, object]) -> EngineRun:
        assert self._sent is not None  # an answer is read only after a request
        identifier, program = self._sent
        return read_answer(answer, identifier, program, nodes=self.reports_nodes, strict=self.strict)

    def _broke_protocol(self, worker: ChildProcess, why: str) -> EngineRun:
        self._discard(worker)
        raise AdapterError(f"--engine-cmd {self._command!r}: the adapter broke the protocol: {why}")

    @property
    def name(self) -> str:
        """The engine's name, as its handshake gives it."""
        return self._handshake_said.name

    @property
    def strict(self) -> bool:
        """Whether the handshake promises refgrad's domain contract (errors only, never a non-finite number)."""
        return self._handshake_said.strict

    @property
    def plain_constants(self) -> bool:
        """A program's constants are numbers written into the request: nothing asks their gradients."""
        return True

    @property
    def reports_nodes(self) -> bool:
        """Whether the answers give every node's value and gradient (the handshake's ``nodes``)."""
        return self._handshake_said.nodes

    def missing(self, op: str) -> str | None:
        """Why the engine cannot run ``op``: the handshake does not list it; None if it does."""
        return None if op in self._handshake_said.ops else "the adapter's handshake does not list it"

    def script(self, program: Program) -> str:
        """A Python script that sends ``program`` to the adapter, prints its answer, then the reference's."""
        request = json.dumps({"id": 1, "program": program.to_dict()}, allow_nan=False)
        engine_half = (
            f"command = {self._argv!r}\n"
            f"request = {request!r}\n"
            "lines = subprocess.run(\n"
            "    command, input=request + '\\n{\"shutdown\": true}\\n', capture_output=True, text=True, check=False\n"
            ").stdout.splitlines()\n"
            'print("engine:", lines[1] if len(lines) > 1 else "no answer")\n\n'
        )
        return program.to_script(
            engine_import="import subprocess", engine_half=engine_half, reference=script_reference()
        )

    def close(self) -> None:
        """Send ``shutdown`` and close the adapter's input; kill it if it has not exited within 5 s (idempotent)."""
        worker = self._worker
        if worker is not None:
            self._worker = None
            worker.shut_down(_SHUTDOWN, SHUTDOWN_WAIT)

    def __reduce__(self) -> tuple[Callable[[str, float, float], CommandEngine], tuple[str, float, float]]:
        """Pickled as its recipe: unpickled (in a ``verify -j`` worker), it starts an adapter of its own."""
        return (_reopen, (self._command, self._timeout, self._startup_timeout))


def _reopen(command: str, timeout: float, startup_timeout: float) -> CommandEngine:
    return CommandEngine(command, timeout=timeout, startup_timeout=startup_timeout)


def _read_handshake(worker: ChildProcess, timeout: float) -> _Handshake | str:
    """The adapter's handshake, read within ``timeout`` s; or what is wrong with it, for a message."""
    answer = worker.receive(timeout)
    problem = ""
    if isinstance(answer, dict):
        try:
            return _Handshake(answer)
        except ValueError as error:
            problem = str(error)
    said = worker.last_words()  # before stop(), which removes the log
    if answer == "timeout":
        problem = f"no handshake within {timeout:g} s (does it flush standard output?)"
    elif answer == "exited":
        problem = f"the adapter exited with status {worker.stop()} before its handshake"
    elif answer == "garbled":
        problem = f"the adapter's first line is not a JSON object: {worker.shown_last_line()}"
    return problem + (f" (its standard error: {said})" if said else "")


def read_answer(
    answer: Mapping[str, object], identifier: int, program: Program, *, nodes: bool, strict: bool
) -> EngineRun:
    """The run an adapter's answer to request ``identifier`` (``program``) reports; ``ValueError`` if malformed.

    A non-finite number is, as for a Python engine, the engine saying "not a finite real"
    (a non-strict engine) or a defect (a strict one): the first non-finite node value (or
    output value) is a forward failure there, else the first non-finite gradient a backward one.
    """
    given = answer.get("id")
    if given != identifier or isinstance(given, bool):
        raise ValueError(f"the answer to request {identifier} has id {given!r}")
    where = f"answer {identifier}"
    if "error" in answer:
        return _refusal(answer["error"], where, program)
    inputs = len(program.inputs)
    value = _number(answer.get("value"), f"{where}: 'value'")
    gradients = _numbers(answer.get("gradients"), inputs, f"{where}: 'gradients'", "inputs")
    if not nodes:
        if "nodes" in answer:
            raise ValueError(f"{where} has 'nodes', but the handshake did not say \"nodes\": true")
        if not math.isfinite(value):
            return EngineRun(program.inputs, (), _bad_number("forward", None, value, strict=strict))
        ends_only = (*program.inputs, *(math.nan,) * (program.node_count - inputs - 1), value)
        failure = _gradient_failure(gradients, strict)
        if failure is not None:
            return EngineRun(ends_only, (), failure, every_node=False)
        padded = (*gradients, *(math.nan,) * (program.node_count - inputs))
        return EngineRun(ends_only, padded, None, every_node=False)
    reported = answer.get("nodes")
    if not isinstance(reported, dict):
        raise ValueError(f"{where} has no 'nodes' object, which the handshake promised")
    fields = cast("dict[str, object]", reported)
    count = program.node_count
    node_values = _numbers(fields.get("values"), count, f"{where}: 'nodes.values'", "nodes")
    node_gradients = _numbers(fields.get("gradients"), count, f"{where}: 'nodes.gradients'", "nodes")
    if not _same(node_values[-1], value):
        raise ValueError(f"{where}: 'value' is {value!r} but the output's node value is {node_values[-1]!r}")
    for index in range(inputs):
        if not _same(node_gradients[index], gradients[index]):
            said = f"'gradients'[{index}] is {gradients[index]!r}, 'nodes.gradients'[{index}] {node_gradients[index]!r}"
            raise ValueError(f"{where}: {said}")
    values = [*program.inputs, *node_values[inputs:]]  # the inputs are the program's (as for a Python engine)
    for node in range(inputs, count):
        if not math.isfinite(values[node]):
            return EngineRun(tuple(values[:node]), (), _bad_number("forward", node, values[node], strict=strict))
    failure = _gradient_failure(node_gradients, strict)
    return (
        EngineRun(tuple(values), (), failure)
        if failure is not None
        else EngineRun(tuple(values), tuple(node_gradients), None)
    )


def _gradient_failure(gradients: Sequence[float], strict: bool) -> EngineFailure | None:
    """The first non-finite gradient as a failure (as a Python engine's ``.grad``); None if all are finite."""
    for gradient in gradients:
        if not math.isfinite(gradient):
            return _bad_number("backward", None, gradient, strict=strict)
    return None


def _bad_number(stage: Stage, node: int | None, value: float, *, strict: bool) -> EngineFailure:
    # What a Python engine's non-finite .data or .grad becomes (MicrogradStyleEngine): the same words.
    return EngineFailure(stage, node, "non-finite result", f"the engine produced {value!r} without raising", not strict)


def _refusal(raw: object, where: str, program: Program) -> EngineRun:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'error' must be an object with 'message' and 'domain'")
    fields = cast("dict[str, object]", raw)
    message, domain = fields.get("message"), fields.get("domain")
    if not isinstance(message, str):
        raise ValueError(f"{where}: the error's 'message' must be a string")
    if not isinstance(domain, bool):
        raise ValueError(f"{where}: the error's 'domain' must be true or false")
    stage = fields.get("stage", "forward")
    if stage not in ("forward", "backward"):
        raise ValueError(f'{where}: the error\'s \'stage\' must be "forward" or "backward", not {stage!r}')
    node = fields.get("node")
    if node is not None and (type(node) is not int or not len(program.inputs) <= node < program.node_count):
        raise ValueError(
            f"{where}: the error's 'node' must be a step's node, {len(program.inputs)} to {program.output}"
        )
    kind = fields.get("type", "error")
    if not isinstance(kind, str):
        raise ValueError(f"{where}: the error's 'type' must be a string")
    chosen: Literal["forward", "backward"] = "forward" if stage == "forward" else "backward"
    at = node if chosen == "forward" else None
    return EngineRun(program.inputs, (), EngineFailure(chosen, at, kind or "error", message[:300], domain))


# The conformance check -----------------------------------------------------------------------

_IN_DOMAIN: Final = (0.75, 1.25)  # inputs every op takes (log, pow and vpow included)
_CONSTANT: Final = 0.5


def _params(op: str) -> tuple[float, ...]:
    return (2.0,) * len(registry[op].params)  # pow's exponent: 2


def _form_program(op: str, form: tuple[str, ...]) -> Program:
    params = _params(op)
    operands = tuple(Ref(i) if kind == "node" else Const(_CONSTANT) for i, kind in enumerate(form))
    inputs = _IN_DOMAIN[: sum(1 for kind in form if kind == "node")]
    renumbered: list[Ref | Const] = []
    next_input = 0
    for operand in operands:
        if isinstance(operand, Ref):
            renumbered.append(Ref(next_input))
            next_input += 1
        else:
            renumbered.append(operand)
    return Program(inputs, (Step(op, tuple(renumbered), params),))


def conformance_programs(ops: frozenset[str]) -> list[tuple[str, Program]]:
    """What ``--protocol-check`` sends an adapter listing ``ops``: each op in each form, then the corner cases."""
    programs = [
        (f"{op} ({' '.join(form)})", _form_program(op, form))
        for op in registry.names
        if op in ops
        for form in forms_of(op)
    ]
    listed = [op for op in registry.names if op in ops]
    # A binary op taking a number on its right (add, in the registry's order), and a unary op without
    # parameters, for the programs of many steps; a unary op whose domain leaves out -1 (log), for a refusal.
    binary = next((op for op in listed if ("node", "const") in forms_of(op)), None)
    unary = next((op for op in listed if registry[op].arity == 1 and not registry[op].params), None)
    refuses = next(
        (op for op in listed if registry[op].arity == 1 and not registry[op].domain.contains(-1.0, *_params(op))), None
    )
    if binary is not None:
        both = Step(binary, (Ref(0), Ref(0)), ())
        programs.append((f"one node as both operands ({binary})", Program((1.5,), (both,))))
        unused = Step(binary, (Ref(0), Const(2.0)), ())
        programs.append(("an input the output does not use", Program((1.5, -2.5), (unused,))))
        for label, value in (("-0.0", -0.0), ("a subnormal", 5e-324), ("a huge number", 1e300)):
            edge = Step(binary, (Ref(0), Ref(1)), ())
            programs.append((f"an input that is {label}", Program((value, 1.0), (edge,))))
        chain = [Step(binary, (Ref(i), Const(1.0)), ()) for i in range(100)]
        programs.append(("a program of 100 steps", Program((1.0,), tuple(chain))))
    elif unary is not None:
        chain = [Step(unary, (Ref(i),), ()) for i in range(100)]
        programs.append(("a program of 100 steps", Program((0.25,), tuple(chain))))
    if refuses is not None:
        refusal = Step(refuses, (Ref(0),), _params(refuses))
        programs.append((f"out of its domain ({refuses} of -1)", Program((-1.0,), (refusal,))))
    return programs


def protocol_check(command: str, out: TextIO, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """``verify --engine-cmd COMMAND --protocol-check``: the adapter's protocol mistakes, one line each.

    Checks the form of the handshake and of every answer to :func:`conformance_programs`, and the
    exit after ``shutdown``; never the numbers. Returns 0 without mistakes, 1 with, 2 if the
    adapter cannot be started at all.
    """
    checked = timeout_argument(timeout)  # TypeError or ValueError if it is no time limit
    timeout = DEFAULT_TIMEOUT if checked is None else checked
    where = f"--engine-cmd {command!r}"
    try:
        argv = shlex.split(command)
    except ValueError as error:
        out.write(f"refgrad: error: {where} cannot be split into words: {error}\n")
        return 2
    if not argv:
        out.write("refgrad: error: --engine-cmd needs a command: the adapter to start\n")
        return 2
    mistakes: list[str] = []

    def start() -> tuple[ChildProcess, _Handshake] | None:
        try:
            worker = ChildProcess(argv, os.environ)
        except OSError as error:
            mistakes.append(f"cannot start {argv[0]!r}: {error.strerror or error}")
            return None
        read = _read_handshake(worker, STARTUP_TIMEOUT)
        if isinstance(read, _Handshake):
            return worker, read
        worker.stop()
        mistakes.append(f"handshake: {read}")
        return None

    started = start()
    if started is None:
        _report(out, command, mistakes, 0)
        return 1
    worker, handshake = started
    programs = conformance_programs(handshake.ops)
    for identifier, (label, program) in enumerate(programs, 1):
        mistake = _exchange(worker, handshake, identifier, program, timeout)
        if mistake is None:
            continue
        mistakes.append(f"program {identifier}, {label}: {mistake}")
        worker.stop()
        restarted = start()
        if restarted is None:
            break
        worker, handshake = restarted
    else:
        status = worker.shut_down(_SHUTDOWN, SHUTDOWN_WAIT)
        if status is None:
            mistakes.append(f'shutdown: still running {SHUTDOWN_WAIT:g} s after {{"shutdown": true}}; it was killed')
        elif status != 0:
            mistakes.append(f"shutdown: exited with status {status} (expected 0)")
    _report(out, command, mistakes, len(programs))
    return 1 if mistakes else 0


def _exchange(
    worker: ChildProcess, handshake: _Handshake, identifier: int, program: Program, timeout: float
) -> str | None:
    """Send one program and check the form of the answer; the mistake, or None."""
    if not worker.send({"id": identifier, "program": program.to_dict()}):
        return "the adapter had exited (its input is closed)"
    answer = worker.receive(timeout)
    if answer == "timeout":
        return f"no answer within {timeout:g} s (does it flush standard output after each line?)"
    if answer == "exited":
        said = worker.last_words()
        return "the adapter exited instead of answering" + (f" (its standard error: {said})" if said else "")
    if answer == "garbled":
        return f"a line that is not a JSON object: {worker.shown_last_line()} (stray output?)"
    try:
        read_answer(answer, identifier, program, nodes=handshake.nodes, strict=handshake.strict)
    except ValueError as error:
        return str(error)
    return None


def _report(out: TextIO, command: str, mistakes: Sequence[str], programs: int) -> None:
    for mistake in mistakes:
        out.write(f"adapter error: {mistake}\n")
    if mistakes:
        out.write(f"FAIL: {len(mistakes)} protocol mistakes by {command!r} ({programs} programs sent)\n")
    else:
        out.write(
            f"OK: {command!r} followed protocol {PROTOCOL_VERSION} on {programs} programs "
            "(handshake, answers' form, shutdown); whether its numbers are right is verify's job\n"
        )
