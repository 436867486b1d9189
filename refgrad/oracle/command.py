"""``python -m refgrad verify``: run the oracle on an engine and print the per-op table and verdict.

Counterexamples are kept in an example database (:mod:`refgrad.oracle.database`)
and replayed before the random run; ``MODULE:CLASS`` engines run in a worker
process with a time limit per program (:mod:`refgrad.oracle.worker`).

Exit status: 0 when every check agreed, 1 when one disagreed (the shrunk
counterexample is printed as a script), 2 for usage errors (one line) and for
``--replay`` when stored counterexamples found at ``--order 2`` could not be
replayed (the engine cannot check second derivatives where it runs), 130 when
interrupted.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Literal, TextIO

from refgrad.numeric import as_count
from refgrad.ops import OpSpec, registry
from refgrad.ops.extra import load_ops
from refgrad.oracle._arguments import order_argument
from refgrad.oracle.blocks import Shard, campaign_blocks, shard_argument
from refgrad.oracle.checks import SECOND_ORDER_NEEDS_TORCH, Outcome
from refgrad.oracle.compare import check_program
from refgrad.oracle.database import DEFAULT_DATABASE, ExampleDatabase, StoredExample, read_program_file_and_order
from refgrad.oracle.engines import (
    ENGINE_NAMES,
    Attributes,
    Engine,
    EngineSpecError,
    SecondOrderEngine,
    load_engine,
    second_order_refusal,
)
from refgrad.oracle.merge import merge_reports, read_report
from refgrad.oracle.optable import op_table, using_ops
from refgrad.oracle.page import html_argument, write_html
from refgrad.oracle.parallel import WorkerError, auto_jobs, jobs_argument
from refgrad.oracle.protocol import AdapterError, CommandEngine
from refgrad.oracle.references import default_references, reference_argument, using_references
from refgrad.oracle.report import format_junit, format_report
from refgrad.oracle.runner import Progress, VerificationReport, check_own_ops, verify
from refgrad.oracle.worker import DEFAULT_TIMEOUT, ChildEngine, IsolatedEngine, timeout_argument

__all__ = ["parse_ops", "run_verify"]

_FORMATS = ("text", "json", "junit")


def parse_ops(text: object) -> tuple[str, ...] | None:
    """``"mul,tanh"`` as op names; ``ValueError`` naming an unknown op or an empty list."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"--ops must be a str of comma-separated op names, got {type(text).__name__}")
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError("--ops needs at least one op name (comma-separated)")
    for name in names:
        op_table.check_name(name, "--ops: ")
    return tuple(dict.fromkeys(names))


def _progress(stream: TextIO) -> Progress | None:
    """A progress line rewritten in place on a terminal; nothing at all when ``stream`` is a file or a pipe."""
    if not stream.isatty():
        return None
    last = 0.0
    started = time.perf_counter()

    def show(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last < 0.2 and done < total:
            return
        rate = done / max(now - started, 1e-9)
        stream.write(f"\r  {done}/{total} graphs checked ({rate:.0f}/s)")
        if done >= total:
            stream.write("\n")
        last = now
        stream.flush()

    return show


def _open_engine(
    spec: str, *, isolate: bool | None, timeout: float | None, attributes: Attributes, command: str | None = None
) -> Engine:
    """The engine for ``spec``: in a worker for ``MODULE:CLASS`` (or when asked), in this process otherwise.

    ``command`` (``--engine-cmd``): the adapter it starts, instead of ``spec``.
    """
    if command is not None:
        return CommandEngine(command, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    if isolate is False and timeout is not None:
        raise ValueError("--timeout needs the engine in a worker process; drop --no-isolate")
    # Only built-in engines are trusted to run in this process by default; asking for a time limit asks for a worker.
    in_worker = isolate if isolate is not None else (spec not in ENGINE_NAMES or timeout is not None)
    if not in_worker:
        return load_engine(spec, attributes)
    if spec not in ENGINE_NAMES and ":" not in spec:
        load_engine(spec)  # the one-line "unknown engine" error, without starting a worker
    return IsolatedEngine(spec, timeout=DEFAULT_TIMEOUT if timeout is None else timeout, attributes=attributes)


def _describe_outcome(title: str, outcome: Outcome, script: str) -> str:
    """A failing outcome as ``verify`` prints counterexamples: what disagreed, the program, a repro script."""
    program = outcome.program
    lines = [title, f"  {program}"]
    lines += [f"  disagreement: {check.detail}" for check in outcome.failures[:5]]
    if len(outcome.failures) > 5:
        lines.append(f"  ... and {len(outcome.failures) - 5} more")
    lines += [f"  program (JSON): {program.to_json()}", "", "reproduce it (engine, then the reference):", "", script]
    return "\n".join(lines).rstrip() + "\n"


_Replayed = Literal["pass", "fail", "not replayed"]


def _replay(engine: Engine, stored: Sequence[StoredExample], out: TextIO) -> _Replayed:
    """Check every stored counterexample again, each at the order it was found at; print a line each.

    Prints the first that still fails. "fail" if one does, "not replayed" if none does but some
    could not be checked (found at order 2, on an engine that cannot check that here), "pass" otherwise.
    """
    still_failing: list[tuple[StoredExample, Outcome]] = []
    not_replayed: list[StoredExample] = []
    for example in stored:
        if example.order == 2 and not isinstance(engine, SecondOrderEngine):
            # Checking it at order 1 could call a second-order bug fixed.
            in_worker = isinstance(engine, IsolatedEngine) and engine.in_process_second_order
            where = " in a worker process (run it in this process)" if in_worker else ""
            out.write(
                f"  not replayed: {example.path.name} ({example.program.node_count} nodes): found at --order 2, "
                f"which {engine.name} cannot check{where}\n"
            )
            not_replayed.append(example)
            continue
        outcome = check_program(example.program, engine, order=example.order)
        verdict = "passes now" if outcome.passed else "still fails"
        at_order = " at --order 2" if example.order == 2 else ""
        out.write(f"  {verdict}: {example.path.name} ({example.program.node_count} nodes){at_order}\n")
        if not outcome.passed:
            still_failing.append((example, outcome))
    passing = len(stored) - len(still_failing) - len(not_replayed)
    out.write(
        f"stored counterexamples: {len(stored) - len(not_replayed)} replayed, {passing} pass now, "
        f"{len(still_failing)} still fail"
        + (f", {len(not_replayed)} not replayed (found at --order 2)" if not_replayed else "")
        + "\n"
    )
    if still_failing:
        example, outcome = still_failing[0]
        out.write("\n" + _describe_outcome(f"still failing: {example.path}", outcome, engine.script(outcome.program)))
        return "fail"
    return "not replayed" if not_replayed else "pass"


def _check_file(engine: Engine, path: str, out: TextIO, order: Literal[1, 2]) -> int:
    program, found_at = read_program_file_and_order(path)
    if found_at > order:
        # A stored entry found at --order 2: checking it at order 1 could call its bug fixed.
        if not isinstance(engine, SecondOrderEngine):
            raise ValueError(
                f"{path} was found at --order 2, which {engine.name} cannot check"
                + (
                    " in a worker process (run it in this process)"
                    if isinstance(engine, IsolatedEngine) and engine.in_process_second_order
                    else ""
                )
            )
        out.write(f"{path} is a stored counterexample found at --order 2: checking it at order 2\n")
        order = 2
    outcome = check_program(program, engine, order=order)
    if outcome.passed:
        kinds = sorted({check.kind for check in outcome.checks})
        out.write(
            f"{program}\nOK: {len(outcome.checks)} checks ({', '.join(kinds) or 'none'}) agreed on {engine.name}\n"
        )
        return 0
    out.write(_describe_outcome(f"FAILED on {engine.name}:", outcome, engine.script(program)))
    return 1


def run_verify(
    engine: str,
    *,
    examples: int,
    seed: int,
    ops: str | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float | None = None,
    isolate: bool | None = None,
    database: str | os.PathLike[str] | None = DEFAULT_DATABASE,
    replay: bool = False,
    program: str | os.PathLike[str] | None = None,
    order: int = 1,
    data: str = "data",
    grad: str = "grad",
    backward: str = "backward",
    strict: bool = False,
    output_format: str = "text",
    html: str | os.PathLike[str] | None = None,
    ops_from: str | None = None,
    references: str | None = None,
    jobs: int | None = None,
    shard: str | None = None,
    engine_cmd: str | None = None,
) -> int:
    """Run the oracle as the command line does; returns the exit status.

    ``timeout`` (seconds per program) and ``isolate`` choose how the engine
    runs (see :func:`_open_engine`); ``database`` is the example database's
    directory (None: none), whose entries for the engine are replayed first;
    ``replay`` checks only those; ``program`` checks only the program in that file.
    ``order=2`` also checks second derivatives; on an engine that cannot
    differentiate its own gradients that is a usage error (exit 2). ``data``,
    ``grad`` and ``backward`` name a micrograd-style class's value, gradient
    and backward method; a class that cannot be driven with them is a usage
    error too, one line naming what is missing and what was found.
    ``strict`` fails the run on warnings too; ``output_format`` is ``"text"``
    (the card), ``"json"`` (one JSON object on ``out``, everything else on ``err``) or
    ``"junit"`` (JUnit XML on ``out``: a testcase per op form and for the compositions).
    ``html`` is a path to write the card to as well, as one HTML page (:mod:`refgrad.oracle.page`).
    ``ops_from`` names a module whose ``OPS`` (a tuple of :class:`~refgrad.ops.OpSpec`) are drawn
    with the registry's ops on refgrad's engine, in this process (:mod:`refgrad.ops.extra`):
    a module that cannot be read, an entry that cannot be checked, or another engine is a usage
    error too. ``references`` is ``torch``, ``mpmath`` or ``both`` (None: both where torch is
    installed, else mpmath, :func:`~refgrad.oracle.references.default_references`); a choice
    whose library is missing, and ``--order 2`` against mpmath alone, are usage errors.
    ``jobs`` worker processes check the random graphs (None: one per core, for a campaign of at
    least :data:`~refgrad.oracle.parallel.BLOCKS_PER_WORKER` blocks per core); ``shard`` (``"K/N"``)
    checks the K-th of N parts of the campaign (see :func:`~refgrad.oracle.runner.verify`).
    ``engine_cmd`` checks the engine behind that adapter command instead of ``engine`` (docs/protocol.md);
    an adapter that breaks the protocol ends the run with one line and exit status 2.
    """
    with contextlib.ExitStack() as scope:
        stdout: TextIO = sys.stdout if out is None else out
        stderr: TextIO = sys.stderr if err is None else err
        try:
            as_count(examples, "--examples")
            as_count(seed, "--seed", minimum=None)
            order_argument(order, "--order")
            processes, part = _scale_arguments(jobs, shard, examples)
            if replay and program is not None:
                raise ValueError("--replay and --program do not go together: --program checks one file")
            if replay and database is None:
                raise ValueError("--replay needs a database")
            if output_format not in _FORMATS:
                raise ValueError(f"--format must be one of {', '.join(_FORMATS)}; got {output_format!r:.80}")
            if output_format != "text" and program is not None:
                raise ValueError(f"--format {output_format} is for a verification run, not --program")
            if html is not None:
                if program is not None or replay:
                    raise ValueError("--html is for a verification run, not --program or --replay")
                html_argument(html)
            choice = default_references() if references is None else reference_argument(references)
            if order == 2 and choice == "mpmath":
                raise ValueError(SECOND_ORDER_NEEDS_TORCH)
            scope.enter_context(using_references(choice))
            if ops_from is not None:
                scope.enter_context(_own_ops(ops_from, engine, isolate=isolate, timeout=timeout))
                check_own_ops(order)
            names = parse_ops(ops)
            attributes = Attributes(data, grad, backward)
            chosen = _open_engine(
                engine, isolate=isolate, timeout=timeout_argument(timeout), attributes=attributes, command=engine_cmd
            )
        except (TypeError, ValueError, EngineSpecError) as error:
            stderr.write(f"refgrad: error: {error}\n")
            return 2
        except KeyboardInterrupt:  # while a worker was loading the engine
            stderr.write("\nrefgrad: interrupted\n")
            return 130
        refusal = second_order_refusal(chosen) if order == 2 else None
        if refusal is not None:
            return _refused(chosen, refusal, stderr)
        if isinstance(chosen, IsolatedEngine) and engine in ENGINE_NAMES:
            # The worker runs programs only: say what the in-process run would check besides.
            stderr.write(f"refgrad verify: {engine} runs in a worker process, where its forward mode is not checked\n")
        try:
            return _run(
                chosen,
                examples=examples,
                seed=seed,
                names=names,
                database=database,
                replay=replay,
                program=program,
                out=stdout,
                err=stderr,
                order=2 if order == 2 else 1,
                strict=strict,
                output_format=output_format,
                html=html,
                jobs=processes,
                shard=part,
            )
        except KeyboardInterrupt:
            stderr.write("\nrefgrad: interrupted\n")
            return 130  # the shell's convention for SIGINT
        except AdapterError as error:  # the adapter's mistake, not a finding about the engine
            return _adapter_error(error, stderr)
        finally:
            if isinstance(chosen, ChildEngine):
                chosen.close()


def _refused(chosen: Engine, refusal: str, stderr: TextIO) -> int:
    """``--order 2`` on an engine that cannot: the engine stopped, the usage error written."""
    if isinstance(chosen, ChildEngine):
        chosen.close()
    stderr.write(f"refgrad: error: --{refusal}\n")
    return 2


def _adapter_error(error: AdapterError, stderr: TextIO) -> int:
    stderr.write(f"refgrad: error: {error} (--protocol-check lists every such mistake)\n")
    return 2


def _scale_arguments(jobs: object, shard: object, examples: int) -> tuple[int, Shard | None]:
    """``--jobs`` (None: as many as pay for themselves, see :func:`auto_jobs`) and ``--shard`` checked."""
    part = None if shard is None else shard_argument(shard, "--shard")
    if jobs is not None:
        return jobs_argument(jobs, "--jobs"), part
    blocks = campaign_blocks(examples, 0)
    return auto_jobs(sum(1 for block in blocks if part is None or part.owns(block))), part


def _own_ops(
    module: str, engine: str, *, isolate: bool | None, timeout: float | None
) -> contextlib.AbstractContextManager[tuple[OpSpec, ...]]:
    """``--ops-from module``: its ops for the run; ``ValueError`` for an engine that cannot build them."""
    extra = load_ops(module, registry)
    dropped = [
        what
        for what, given in (
            (f"--engine {engine}", engine != "refgrad"),
            ("--isolate", bool(isolate)),
            ("--timeout", timeout is not None),
        )
        if given
    ]
    if dropped:
        raise ValueError(
            "--ops-from checks your ops on refgrad's own engine in this process, which builds them from "
            f"their entries: drop {', '.join(dropped)}"
        )
    return using_ops(extra, origin=module)


def _database_key(engine: Engine) -> str:
    """The engine's name in the example database; with ops of the caller's, their module's too.

    Their programs cannot be read back without those ops, so they are kept apart.
    """
    if not op_table.extra:
        return engine.name
    return f"{engine.name}+{op_table.origin or ','.join(sorted(op_table.extra))}"


def _run(
    engine: Engine,
    *,
    examples: int,
    seed: int,
    names: tuple[str, ...] | None,
    database: str | os.PathLike[str] | None,
    replay: bool,
    program: str | os.PathLike[str] | None,
    out: TextIO,
    err: TextIO,
    order: Literal[1, 2],
    strict: bool,
    output_format: str,
    html: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    shard: Shard | None = None,
) -> int:
    # With --format json or junit, standard output carries the one document and nothing else.
    card, out = out, err if output_format != "text" else out
    if program is not None:
        try:
            return _check_file(engine, os.fspath(program), out, order)
        except ValueError as error:
            err.write(f"refgrad: error: --program {error}\n")
            return 2
    store = None if database is None else ExampleDatabase(database)
    if store is not None:
        stored, corrupt = store.load(_database_key(engine))
        for entry in corrupt:
            err.write(
                f"refgrad: warning: skipping a corrupt entry in the example database: {entry.path}: {entry.reason}\n"
            )
        if replay and not stored:
            out.write(f"no stored counterexamples for {engine.name} in {store.root}\n")
            return 0
        if stored:
            where = store.directory(_database_key(engine))
            err.write(f"refgrad verify: replaying {len(stored)} stored counterexample(s) from {where}\n")
            replayed = _replay(engine, stored, out)
            if replayed == "fail":
                if not replay:
                    out.write("\n(the random run was not started: fix the stored counterexamples first)\n")
                if html is not None:
                    err.write(
                        f"refgrad: warning: --html: no page written (the run stopped at the stored "
                        f"counterexamples); {os.fspath(html)!r:.200} is not this run's\n"
                    )
                return 1
            if replayed == "not replayed":
                # Not a pass: the bug those entries recorded may still be there.
                err.write(
                    f"refgrad: warning: stored counterexamples found at --order 2 were not replayed: "
                    f"{engine.name} cannot check second derivatives here\n"
                )
                if replay:
                    return 2
            if replay:
                return 0
            out.write("\n")
    scope = "all ops" if names is None else ", ".join(names)
    what = "second order, " if order == 2 else ""
    part = f", shard {shard} of them" if shard is not None else ""
    err.write(f"refgrad verify: {examples} random graphs{part} on {engine.name}, {what}seed {seed}, {scope}\n")
    try:
        report = verify(
            engine,
            examples=examples,
            seed_value=seed,
            ops=names,
            progress=_progress(err),
            order=order,
            strict=strict,
            jobs=jobs,
            shard=shard,
        )
    except (WorkerError, ValueError) as error:
        err.write(f"refgrad: error: {error}\n")
        return 2
    return _write_card(report, card, err, output_format, html) or _store(report, store, engine, err, order)


def _write_card(
    report: VerificationReport, card: TextIO, err: TextIO, output_format: str, html: str | os.PathLike[str] | None
) -> int:
    """The card on ``card`` in ``output_format``, and as a page at ``html``; 2 if the page could not be written."""
    if output_format == "json":
        card.write(report.to_json() + "\n")
    else:
        card.write(format_junit(report) if output_format == "junit" else format_report(report))
    if html is not None:
        try:
            written = write_html(report, html)
        except OSError as error:
            err.write(f"refgrad: error: --html: could not write the card: {error}\n")
            return 2
        err.write(f"refgrad verify: the card as a page: {written}\n")
    return 0


def _store(
    report: VerificationReport, store: ExampleDatabase | None, engine: Engine, err: TextIO, order: Literal[1, 2]
) -> int:
    """The exit status; the counterexample stored in the example database first, if there is one."""
    if report.forms_checked == 0 and not report.defects:
        err.write("refgrad: error: the engine supports none of the ops asked for\n")
        return 2
    if report.failure is not None and store is not None:
        try:
            failures = report.failure.failures
            why = failures[0].detail if failures else report.defects[0].summary
            path = store.save(_database_key(engine), report.failure.program, why, order=order)
        except OSError as error:
            err.write(f"refgrad: warning: could not store the counterexample in {store.root}: {error}\n")
        else:
            # On stderr: stdout ends with the script, ready to be cut out and run.
            err.write(f"refgrad verify: stored in the example database as {path} (replayed first next time)\n")
    return 0 if report.passed else 1


def run_merge(
    paths: Sequence[str | os.PathLike[str]],
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    output_format: str = "text",
    html: str | os.PathLike[str] | None = None,
) -> int:
    """``python -m refgrad merge``: the shards' JSON reports as one card; 0 pass, 1 fail, 2 a usage error."""
    stdout: TextIO = sys.stdout if out is None else out
    stderr: TextIO = sys.stderr if err is None else err
    try:
        if output_format not in _FORMATS:
            raise ValueError(f"--format must be one of {', '.join(_FORMATS)}; got {output_format!r:.80}")
        if html is not None:
            html_argument(html)
        report = merge_reports([(os.fspath(path), read_report(path)) for path in paths])
    except ValueError as error:
        stderr.write(f"refgrad: error: merge: {error}\n")
        return 2
    stderr.write(
        f"refgrad merge: {report.shards} shard(s) of {report.requested} random graphs on {report.engine}, "
        f"seed {report.seed}\n"
    )
    status = _write_card(report, stdout, stderr, output_format, html)
    return status or (0 if report.passed else 1)
