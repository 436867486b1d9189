"""Engines in a worker process: whatever an engine does, the oracle keeps running and reports it.

An engine the oracle checks is code it does not trust: it may raise anything,
return garbage, change its nodes in place, call ``sys.exit`` or ``os._exit``,
crash the interpreter, or loop forever. The adapters in
:mod:`~refgrad.oracle.engines` turn exceptions, bad numbers and mutations into
:class:`~refgrad.oracle.engines.EngineFailure` s, but a thread cannot be
stopped from outside and ``signal.alarm`` works only in the main thread (and
not on Windows). So :class:`IsolatedEngine` runs the engine in a persistent
child process (in effect ``python -m refgrad.oracle.worker MODULE:CLASS``, but
started without the package's ``__init__``: see ``_BOOTSTRAP``) and talks to
it over a pipe, one JSON line per message (the program IR already round-trips
through JSON, floats bit for bit):

* oracle to worker: ``{"program": {...}}`` (run it) or ``{"script": {...}, "reference": "torch" | "mpmath"}``
  (the repro script for it, comparing with that reference);
* worker to oracle: ``{"ready": {"name", "strict", "missing"}}`` once, then
  ``{"run": {"values", "gradients", "failure"}}`` or ``{"script": "..."}``
  per request; ``{"error": "..."}`` if the engine cannot be loaded.

If no answer comes within the time limit, or the worker dies, the oracle kills
it, records the failure (naming the timeout, or the exit status, and where the
engine was stuck: the worker arms :func:`faulthandler.dump_traceback_later`
before each run) and starts a fresh worker for the next program. The worker
keeps the protocol on duplicates of its original stdin and stdout and points
file descriptors 0 and 1 at ``/dev/null`` and its stderr, so an engine that
prints or reads cannot corrupt it; it ignores Ctrl-C, which the oracle handles.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, Self, cast, get_args

from refgrad.ops import registry
from refgrad.oracle.engines import (
    MICROGRAD_ATTRIBUTES,
    Attributes,
    EngineFailure,
    EngineRun,
    EngineSpecError,
    MicrogradStyleEngine,
    RunStarter,
    Stage,
    load_engine,
)
from refgrad.oracle.program import Program
from refgrad.oracle.references import script_reference, using_references

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "STARTUP_TIMEOUT",
    "ChildEngine",
    "ChildProcess",
    "IsolatedEngine",
    "timeout_argument",
]

DEFAULT_TIMEOUT: Final = 5.0
"""Seconds the oracle waits for an isolated engine's answer on one program (``verify --timeout``)."""

MAX_TIMEOUT: Final = 86400.0
"""The longest time limit accepted (a day): longer waits are no limit at all, and overflow ``select``."""

STARTUP_TIMEOUT: Final = 60.0
"""Seconds a worker may take to start: importing torch and the engine's module, under load."""


def timeout_argument(timeout: object) -> float | None:
    """``timeout`` checked (seconds per program, or None), before anything else reads it."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"--timeout must be a number of seconds, got {type(timeout).__name__}")
    if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN
        raise ValueError(f"--timeout must be a positive number of seconds, at most {MAX_TIMEOUT:g}; got {timeout!r}")
    return float(timeout)


# How the worker starts: like ``python -m refgrad.oracle.worker``, but without running the package's
# __init__, which imports torch and hypothesis (1.3 s of a 1.5 s start; the worker needs neither, and
# it starts again after every hang). The package module is created empty and runs its __init__ only
# if the engine's own code asks it for a name.
_BOOTSTRAP: Final = """
import importlib.util, sys
spec = importlib.util.find_spec("refgrad.oracle")
package = importlib.util.module_from_spec(spec)
def complete(name):
    del package.__getattr__
    spec.loader.exec_module(package)
    return getattr(package, name)
package.__getattr__ = complete
sys.modules["refgrad.oracle"] = package
from refgrad.oracle.worker import main
sys.exit(main(sys.argv[1:]))
"""
_LOG_TAIL: Final = 64 * 1024  # bytes of the worker's stderr read after a failure
_ORACLE_CODE: Final = str(Path(__file__).resolve().parent)
_FRAME: Final = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<function>.*)$')


def _keep_negative_zero(text: str) -> int | float:
    """A JSON integer; ``-0`` as ``-0.0`` (an adapter's way of writing the sign of zero, docs/protocol.md)."""
    return -0.0 if text == "-0" else int(text)


def _read_lines(stream: IO[bytes], answers: queue.Queue[bytes | None]) -> None:
    """Move the worker's answers into a queue (so that waiting for one can time out); None at the end."""
    with contextlib.suppress(OSError, ValueError):  # the pipe closed under us: the worker is gone
        for line in stream:
            answers.put(line)
    answers.put(None)


def _stop(process: subprocess.Popen[bytes], log_path: str) -> None:
    """Kill the worker and remove its log (also run when the oracle exits or forgets the engine)."""
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with contextlib.suppress(OSError):
        os.unlink(log_path)


class ChildProcess:
    """One child process (the engine's worker, or a user's adapter), its answer queue and its stderr log."""

    def __init__(self, argv: Sequence[str], environment: Mapping[str, str]) -> None:
        """Start ``argv``; ``OSError`` (the log file removed again) if it cannot be started."""
        handle, self.log_path = tempfile.mkstemp(prefix="refgrad-worker-", suffix=".log")
        os.close(handle)
        try:
            with open(self.log_path, "ab") as log:  # append mode: the child's writes never clobber each other
                self.process = subprocess.Popen(
                    list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=dict(environment)
                )
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            raise
        stdout = self.process.stdout
        assert stdout is not None  # stdout=PIPE
        # Where select() works on pipes (POSIX), answers are read here, with select's timeout: on a
        # busy machine every thread switch waits for a time slice, and a reader thread would add one.
        self._pipe: int | None = stdout.fileno() if os.name == "posix" else None
        self._pending = b""
        self.answers: queue.Queue[bytes | None] = queue.Queue()
        self.last_line = b""  # the last line received (what a garbled answer said)
        self.lines_received = 0
        if os.name != "posix":
            threading.Thread(target=_read_lines, args=(stdout, self.answers), daemon=True).start()
        self._finalizer = weakref.finalize(self, _stop, self.process, self.log_path)

    def send(self, message: Mapping[str, object]) -> bool:
        """Write one request; False if the worker is gone."""
        stdin = self.process.stdin
        assert stdin is not None  # stdin=PIPE
        try:
            stdin.write(json.dumps(message, allow_nan=False).encode("utf-8") + b"\n")
            stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or a closed file after the worker died
            return False
        return True

    def _next_line(self, timeout: float) -> bytes | Literal["timeout", "exited"]:
        if self._pipe is None:
            try:
                line = self.answers.get(timeout=timeout)
            except queue.Empty:
                return "timeout"
            return "exited" if line is None else line
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._pipe], [], [], remaining)[0]:
                return "timeout"
            try:
                chunk = os.read(self._pipe, 1 << 16)
            except OSError:
                return "exited"
            if not chunk:
                return "exited"
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line

    def receive(self, timeout: float) -> dict[str, object] | Literal["timeout", "exited", "garbled"]:
        """The next answer, or what happened instead."""
        line = self._next_line(timeout)
        if isinstance(line, str):  # "timeout" or "exited"
            return line
        self.last_line = line
        self.lines_received += 1
        try:
            answer: object = json.loads(line, parse_int=_keep_negative_zero)
        except ValueError:  # not JSON, or not UTF-8
            return "garbled"
        if not isinstance(answer, dict):
            return "garbled"
        return cast("dict[str, object]", answer)

    def log_size(self) -> int:
        """How much the worker has written to stderr so far."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def shown_last_line(self) -> str:
        """The last line received, for a message: decoded, quoted, and cut at 120 characters."""
        text = self.last_line.decode("utf-8", errors="replace").rstrip("\r")
        return repr(text[:120] + ("..." if len(text) > 120 else ""))

    def last_words(self, offset: int = 0) -> str:
        """The last non-blank line written to stderr after ``offset`` (at most 200 characters), or ``""``."""
        lines = [line.strip() for line in self.log_since(offset).splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    def log_since(self, offset: int) -> str:
        """What the worker wrote to stderr after ``offset`` (at most the last 64 kB of it)."""
        try:
            with open(self.log_path, "rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(offset, end - _LOG_TAIL))
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        """Kill the worker; its exit status (None if it would not die)."""
        self._finalizer()
        return self.process.poll()

    def shut_down(self, message: Mapping[str, object], wait: float) -> int | None:
        """Send ``message``, close the child's input and give it ``wait`` seconds to exit before it is killed.

        Its exit status if it exited by itself; None if it had to be killed.
        """
        self.send(message)
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        try:
            status: int | None = self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            status = None
        self.stop()
        return status


def _stuck_at(log: str) -> str:
    """Where faulthandler's watchdog found the engine: the innermost frame outside the oracle."""
    dump = log.rsplit("Timeout (", 1)
    if len(dump) < 2:
        return ""
    for line in dump[1].splitlines()[1:]:
        frame = _FRAME.match(line)
        if frame is None:
            if line.strip():
                continue
            break  # the end of the first thread's stack
        if not frame["file"].startswith(_ORACLE_CODE):
            return f"{frame['file']}:{frame['line']} in {frame['function']}"
    return ""


def _process_failure(exception: str, message: str) -> EngineRun:
    return EngineRun((), (), EngineFailure("process", None, exception, message[:300], False))


def _run_from_answer(answer: object) -> EngineRun:
    """The worker's ``run`` answer as an :class:`EngineRun`; ``ValueError`` if it is malformed."""
    if not isinstance(answer, dict):
        raise ValueError("not an object")
    fields = cast("dict[str, object]", answer)
    values, gradients, failure = fields.get("values"), fields.get("gradients"), fields.get("failure")
    if not isinstance(values, list) or not isinstance(gradients, list):
        raise ValueError("values and gradients must be lists")
    numbers = cast("list[object]", values) + cast("list[object]", gradients)
    if not all(type(number) is float for number in numbers):
        raise ValueError("values and gradients must be floats")
    engine_failure: EngineFailure | None = None
    if failure is not None:
        if not isinstance(failure, dict):
            raise ValueError("failure must be an object")
        described = cast("dict[str, object]", failure)
        stage, node = described.get("stage"), described.get("node")
        exception, message = described.get("exception"), described.get("message")
        signal_given = described.get("domain_signal")
        if stage not in get_args(Stage) or not (node is None or type(node) is int):
            raise ValueError("failure stage or node malformed")
        if not isinstance(exception, str) or not isinstance(message, str) or not isinstance(signal_given, bool):
            raise ValueError("failure fields malformed")
        engine_failure = EngineFailure(cast("Stage", stage), node, exception, message, signal_given)
    return EngineRun(tuple(cast("list[float]", values)), tuple(cast("list[float]", gradients)), engine_failure)


class ChildEngine(RunStarter):
    """An engine in a child process, one JSON line per message, with a time limit per program.

    What :class:`IsolatedEngine` (a Python engine in refgrad's worker) and
    :class:`~refgrad.oracle.protocol.CommandEngine` (a user's adapter, any
    language) share: each :meth:`run` has ``timeout`` seconds; a timeout or a
    dead process is reported as an :class:`EngineFailure` with stage
    ``"process"``, and the next run gets a fresh process. :meth:`close` (or
    leaving a ``with`` block) stops it. A subclass says how to start the process,
    read its first message, ask for a run and read the answer.
    """

    _who = "the engine's process"
    """How failures name the child process."""

    def __init__(self, *, timeout: float, startup_timeout: float) -> None:
        """Check the limits (seconds); the subclass then calls :meth:`_start_first`."""
        if not (0 < timeout <= MAX_TIMEOUT and 0 < startup_timeout <= MAX_TIMEOUT):  # also refuses NaN
            raise ValueError(
                f"timeouts must be positive numbers of seconds, at most {MAX_TIMEOUT:g}; "
                f"got {timeout!r} and {startup_timeout!r}"
            )
        self._timeout = float(timeout)
        self._startup_timeout = float(startup_timeout)
        self._restarts = 0
        self._broken: str | None = None  # why the process cannot be restarted, once that happened
        self._uncollected = False  # a program was sent and its answer not read yet
        self._worker: ChildProcess | None = None

    # What a subclass provides ----------------------------------------------------------------

    @abstractmethod
    def _spawn(self) -> ChildProcess:
        """Start the child process; ``EngineSpecError`` (one line) if it cannot be started."""

    @abstractmethod
    def _handshake(self, worker: ChildProcess) -> str | None:
        """Read the child's first message and keep what it says; why it is unusable, or None."""

    @abstractmethod
    def _answer(self, answer: dict[str, object]) -> EngineRun:
        """The run in the child's answer to the request sent last; ``ValueError`` if it is malformed."""

    @abstractmethod
    def _broke_protocol(self, worker: ChildProcess, why: str) -> EngineRun:
        """What a malformed answer (``why``) becomes: a run recording it, or an exception ending the check."""

    # The shared machinery --------------------------------------------------------------------

    def _start_first(self) -> None:
        """Start the first process and read its first message; ``EngineSpecError`` (one line) if that fails."""
        worker = self._spawn()
        problem = self._handshake(worker)
        if problem is not None:
            worker.stop()
            raise EngineSpecError(problem)
        self._worker = worker

    @property
    def timeout(self) -> float:
        """Seconds allowed per program."""
        return self._timeout

    @property
    def restarts(self) -> int:
        """Processes started after the first one (one per timeout or death)."""
        return self._restarts

    def _live_worker(self) -> ChildProcess | str:
        """The process, started afresh (and its first message read) if the last one was stopped; or why that failed."""
        if self._broken is not None:
            return self._broken
        worker = self._worker
        if worker is None:
            try:
                worker = self._spawn()
            except EngineSpecError as error:
                self._broken = str(error)
                return self._broken
            self._restarts += 1
            problem = self._handshake(worker)
            if problem is not None:
                worker.stop()
                self._broken = problem
                return problem
            self._worker = worker
        return worker

    def _discard(self, worker: ChildProcess) -> int | None:
        status = worker.stop()
        self._worker = None
        return status

    def start(self, program: Program) -> Callable[[], EngineRun]:
        """Send ``program`` to the process now; the function returned waits for its run (once).

        The oracle computes torch's reference meanwhile, so the round trip
        between the processes costs no time. The time limit counts from now.
        Starting another program before collecting this one restarts the
        process (its answer would come out of turn).
        """
        return self._request(self._request_for(program))

    @abstractmethod
    def _request_for(self, program: Program) -> Mapping[str, object]:
        """The message asking the child to run ``program``."""

    def _request(self, message: Mapping[str, object]) -> Callable[[], EngineRun]:
        """Send a request answered by a run; the function returned waits for it (once)."""
        self._drop_uncollected()
        worker = self._live_worker()
        if isinstance(worker, str):
            failed = _process_failure("worker failed", f"{self._who} could not be restarted: {worker}")
            return lambda: failed
        offset = worker.log_size()
        if not worker.send(message):
            died = self._died(worker, offset)
            return lambda: died
        self._uncollected = True
        deadline = time.monotonic() + self._timeout
        collected = False

        def finish() -> EngineRun:
            nonlocal collected
            if collected or worker is not self._worker:
                raise RuntimeError("a started run is collected once, before the next one starts")
            collected = True
            self._uncollected = False
            return self._collect(worker, offset, deadline)

        return finish

    def run(self, program: Program) -> EngineRun:
        """Run ``program`` in the process; a timeout or a dead process is a ``"process"`` failure."""
        return self.start(program)()

    def _drop_uncollected(self) -> None:
        if self._uncollected and self._worker is not None:
            self._discard(self._worker)
        self._uncollected = False

    def _collect(self, worker: ChildProcess, offset: int, deadline: float) -> EngineRun:
        answer = worker.receive(max(0.0, deadline - time.monotonic()))
        if answer == "timeout":
            where = _stuck_at(worker.log_since(offset))  # before the log goes with the worker
            self._discard(worker)
            stuck = f" (stuck at {where})" if where else ""
            return _process_failure(
                "timeout", f"no answer within {self._timeout:g} s{stuck}; {self._who} was killed and restarted"
            )
        if answer == "exited":
            return self._died(worker, offset)
        if answer == "garbled":
            return self._broke_protocol(worker, f"a line that is not a JSON object: {worker.shown_last_line()}")
        try:
            return self._answer(answer)
        except ValueError as error:
            return self._broke_protocol(worker, str(error))

    def _died(self, worker: ChildProcess, offset: int) -> EngineRun:
        said = worker.last_words(offset)  # before the log goes with the worker
        status = self._discard(worker)
        how = f"was killed by signal {-status}" if status is not None and status < 0 else f"exited with status {status}"
        last = f"; its last words: {said}" if said else ""
        return _process_failure("process exit", f"{self._who} {how}{self._crash_hint}{last}; restarted")

    _crash_hint = " (os._exit in the engine, or a crash)"

    def close(self) -> None:
        """Stop the process (idempotent)."""
        if self._worker is not None:
            self._discard(self._worker)

    def __enter__(self) -> Self:
        """The engine itself; the process stops when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the process."""
        self.close()


@dataclass(frozen=True, slots=True)
class _Ready:
    """What the worker says once the engine is loaded."""

    name: str
    strict: bool
    missing: dict[str, str | None]
    keeps_gradients: bool
    zero_grad: bool


class IsolatedEngine(ChildEngine):
    """An engine (``refgrad``, ``micrograd-compat`` or ``MODULE:CLASS``) run in a worker process, with a time limit.

    Construction starts the worker and raises :class:`EngineSpecError` (one
    line) if the engine cannot be loaded there: the module does not import (or
    calls ``sys.exit``, or hangs), the class is not there. Each :meth:`run`
    then has ``timeout`` seconds; a timeout or a dead worker is reported as an
    :class:`EngineFailure` with stage ``"process"``, and the next run gets a
    fresh worker. :meth:`close` (or leaving a ``with`` block) stops the worker.
    """

    def __init__(
        self,
        spec: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        startup_timeout: float = STARTUP_TIMEOUT,
        attributes: Attributes = MICROGRAD_ATTRIBUTES,
    ) -> None:
        """Start the worker for ``spec`` and wait (up to ``startup_timeout`` s) until the engine is loaded.

        ``attributes`` names the class's value, gradient and backward method (see :class:`Attributes`).
        """
        if not isinstance(attributes, Attributes):
            raise TypeError(f"attributes must be an Attributes, got {type(attributes).__name__}")
        super().__init__(timeout=timeout, startup_timeout=startup_timeout)
        self._attributes = attributes
        self._spec = spec
        self.in_process_second_order = spec == "refgrad"  # refgrad's own Value differentiates its gradients
        # The worker dumps its stack a little before the oracle gives up, to say where the engine is stuck.
        self._watchdog = 0.8 * self._timeout
        self._ready = _Ready(spec, strict=False, missing={}, keeps_gradients=False, zero_grad=False)
        self._start_first()

    def _spawn(self) -> ChildProcess:
        # The child imports what this process would: the same refgrad, the engine's module from the same path.
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
        argv = [
            sys.executable,
            "-c",
            _BOOTSTRAP,
            self._spec,
            repr(self._watchdog),
            _attributes_argument(self._attributes),
        ]
        try:
            return ChildProcess(argv, environment)
        except OSError as error:
            raise EngineSpecError(f"--engine {self._spec}: cannot start a worker process: {error}") from None

    def _handshake(self, worker: ChildProcess) -> str | None:
        """Keep the engine's name, strictness, missing ops and gradient keeping; or why the worker could not load it."""
        answer = worker.receive(self._startup_timeout)
        if answer == "timeout":
            limit = f"{self._startup_timeout:g} s"
            return f"--engine {self._spec}: loading it took longer than {limit} (does importing it hang?)"
        if not isinstance(answer, dict):
            said = worker.last_words()
            status = worker.stop()
            return f"--engine {self._spec}: the worker process exited with status {status} while loading it" + (
                f" ({said})" if said else ""
            )
        if "error" in answer:
            lines = str(answer["error"]).splitlines()  # a usage error is one line, whatever the module raised
            return lines[0] if lines else f"--engine {self._spec}: the worker could not load it"
        ready = answer.get("ready")
        if not isinstance(ready, dict):
            return f"--engine {self._spec}: the worker's first message was not 'ready'"
        fields = cast("dict[str, object]", ready)
        name, strict, missing = fields.get("name"), fields.get("strict"), fields.get("missing")
        keeps, zero_grad = fields.get("keeps_gradients"), fields.get("zero_grad")
        if (
            not isinstance(name, str)
            or not isinstance(strict, bool)
            or not isinstance(missing, dict)
            or not isinstance(keeps, bool)
            or not isinstance(zero_grad, bool)
        ):
            return f"--engine {self._spec}: the worker's 'ready' message is malformed"
        given = cast("dict[object, object]", missing)
        reasons = {str(op): reason if isinstance(reason, str) else None for op, reason in given.items()}
        self._ready = _Ready(name, strict, reasons, keeps, zero_grad)
        return None

    def _request_for(self, program: Program) -> Mapping[str, object]:
        return {"program": program.to_dict()}

    def _answer(self, answer: dict[str, object]) -> EngineRun:
        if "run" not in answer:
            raise ValueError("the worker's answer was not a run")
        return _run_from_answer(answer["run"])

    def _broke_protocol(self, worker: ChildProcess, why: str) -> EngineRun:
        self._discard(worker)
        return _process_failure("worker failed", f"the worker's answer was malformed ({why}); it was restarted")

    @property
    def name(self) -> str:
        """The engine's own name (``module:Class`` for a class)."""
        return self._ready.name

    @property
    def strict(self) -> bool:
        """Whether the engine inside promises refgrad's ``DomainError`` contract."""
        return self._ready.strict

    @property
    def keeps_gradients(self) -> bool:
        """Whether the engine inside keeps its gradients on its nodes (a micrograd-style class)."""
        return self._ready.keeps_gradients

    @property
    def has_zero_grad(self) -> bool:
        """Whether the engine inside has a ``zero_grad()`` on its nodes."""
        return self._ready.zero_grad

    def missing(self, op: str) -> str | None:
        """Why the engine cannot express ``op`` at all (a missing method), as the worker found; or None."""
        if op not in self._ready.missing:
            return f"no micrograd-style spelling for op {op!r}"
        return self._ready.missing[op]

    def accumulate(self, first: Program, then: Program, *, zero_grad: bool) -> EngineRun:
        """:meth:`~refgrad.oracle.engines.AccumulatingEngine.accumulate` in the worker, with the time limit of a run."""
        if not self._ready.keeps_gradients:
            raise ValueError(f"{self.name} returns its gradients: it keeps none on its nodes to accumulate")
        request = {"first": first.to_dict(), "then": then.to_dict(), "zero_grad": zero_grad}
        return self._request({"accumulate": request})()

    def script(self, program: Program) -> str:
        """The engine's repro script for ``program``, as the worker writes it (a generic one if it cannot)."""
        self._drop_uncollected()
        worker = self._live_worker()
        reference = script_reference()
        if not isinstance(worker, str) and worker.send({"script": program.to_dict(), "reference": reference}):
            answer = worker.receive(max(self._timeout, 10.0))
            if isinstance(answer, dict) and isinstance(answer.get("script"), str):
                return cast("str", answer["script"])
            self._discard(worker)
        module, _, class_name = self._spec.partition(":")
        names = self._attributes
        return program.to_script(
            engine_import=f"from {module} import {class_name} as Value",
            differentiate="backward",
            data=names.data,
            grad=names.grad,
            backward=names.backward,
            reference=reference,
        )

    def __reduce__(
        self,
    ) -> tuple[Callable[[str, float, float, Attributes], IsolatedEngine], tuple[str, float, float, Attributes]]:
        """Pickled as its recipe: unpickled (in a ``verify -j`` worker), it starts a worker of its own."""
        return (_reopen, (self._spec, self._timeout, self._startup_timeout, self._attributes))


# The worker's side ------------------------------------------------------------------------


def _encode_run(run: EngineRun) -> dict[str, object]:
    failure = run.failure
    described = None
    if failure is not None:
        described = {
            "stage": failure.stage,
            "node": failure.node,
            "exception": failure.exception,
            "message": failure.message,
            "domain_signal": failure.domain_signal,
        }
    return {"values": list(run.values), "gradients": list(run.gradients), "failure": described}


def _attributes_argument(attributes: Attributes) -> str:
    return json.dumps([attributes.data, attributes.grad, attributes.backward])


def _read_attributes(argument: str) -> Attributes:
    data, grad, backward = json.loads(argument)
    return Attributes(data, grad, backward)


def _serve(spec: str, watchdog: float, attributes: Attributes) -> int:
    """The worker's loop: load the engine, then answer requests until stdin closes."""
    protocol_out = os.fdopen(os.dup(1), "wb")
    protocol_in = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)  # the engine's prints go to the log, not into the protocol
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the oracle's to handle

    def send(message: Mapping[str, object]) -> None:
        protocol_out.write(json.dumps(message).encode("utf-8") + b"\n")
        protocol_out.flush()

    try:
        engine = load_engine(spec, attributes)
    except EngineSpecError as error:
        send({"error": str(error)})
        return 0
    except BaseException as error:  # sys.exit while importing the module, say
        send({"error": f"cannot import the engine for --engine {spec}: {type(error).__name__}: {error}"})
        return 0
    missing: dict[str, str | None] = dict.fromkeys(registry.names)
    keeps = zero_grad = False
    if isinstance(engine, MicrogradStyleEngine):
        missing = {spec.name: engine.missing(spec.name) for spec in registry}
        keeps, zero_grad = engine.keeps_gradients, engine.has_zero_grad
    ready = {"name": engine.name, "strict": engine.strict, "missing": missing}
    send({"ready": {**ready, "keeps_gradients": keeps, "zero_grad": zero_grad}})
    for line in protocol_in:
        request = json.loads(line)
        if "script" in request:
            with contextlib.ExitStack() as scope:
                if request.get("reference") == "mpmath":
                    scope.enter_context(using_references("mpmath"))
                send({"script": engine.script(Program.from_dict(request["script"]))})
            continue
        faulthandler.dump_traceback_later(watchdog)
        try:
            if "accumulate" in request and isinstance(engine, MicrogradStyleEngine):
                asked = request["accumulate"]
                first, then = Program.from_dict(asked["first"]), Program.from_dict(asked["then"])
                run = engine.accumulate(first, then, zero_grad=asked["zero_grad"] is True)
            else:
                run = engine.run(Program.from_dict(request["program"]))
        except BaseException as error:  # KeyboardInterrupt or GeneratorExit raised by the engine itself
            run = EngineRun((), (), EngineFailure("process", None, type(error).__name__, str(error)[:300], False))
        finally:
            faulthandler.cancel_dump_traceback_later()
        send({"run": _encode_run(run)})
    return 0


def main(argv: list[str]) -> int:
    """``python -m refgrad.oracle.worker SPEC [WATCHDOG_SECONDS [ATTRIBUTES_JSON]]``: serve one engine over stdio."""
    if len(argv) not in (1, 2, 3):
        print(
            "usage: python -m refgrad.oracle.worker MODULE:CLASS [WATCHDOG_SECONDS [ATTRIBUTES_JSON]]", file=sys.stderr
        )
        return 2
    watchdog = float(argv[1]) if len(argv) >= 2 else 0.8 * DEFAULT_TIMEOUT
    attributes = _read_attributes(argv[2]) if len(argv) == 3 else MICROGRAD_ATTRIBUTES
    return _serve(argv[0], watchdog, attributes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def _reopen(spec: str, timeout: float, startup_timeout: float, attributes: Attributes) -> IsolatedEngine:
    """An unpickled :class:`IsolatedEngine`: the same engine and limits, in a worker of its own."""
    return IsolatedEngine(spec, timeout=timeout, startup_timeout=startup_timeout, attributes=attributes)
