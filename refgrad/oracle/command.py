"""``python -m refgrad verify``: run the oracle on an engine and print the per-op table and verdict.

Exit status: 0 when every check agreed, 1 when one disagreed (the shrunk
counterexample is printed as a script), 2 for usage errors (one line), 130 when
interrupted.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from refgrad.ops import registry
from refgrad.oracle.engines import EngineSpecError, load_engine
from refgrad.oracle.report import format_report
from refgrad.oracle.runner import Progress, verify

__all__ = ["parse_ops", "run_verify"]


def parse_ops(text: str | None) -> tuple[str, ...] | None:
    """``"mul,tanh"`` as op names; ``ValueError`` naming an unknown op or an empty list."""
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError("--ops needs at least one op name (comma-separated)")
    for name in names:
        if name not in registry:
            raise ValueError(f"--ops: no op named {name!r}; known ops: {','.join(registry.names)}")
    return tuple(dict.fromkeys(names))


def _progress(stream: TextIO) -> Progress:
    interactive = stream.isatty()
    last = 0.0
    started = time.perf_counter()

    def show(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if interactive:
            if now - last < 0.2 and done < total:
                return
            rate = done / max(now - started, 1e-9)
            stream.write(f"\r  {done}/{total} graphs checked ({rate:.0f}/s)")
            if done >= total:
                stream.write("\n")
        elif done == total or done % max(1, total // 10) == 0:
            stream.write(f"  {done}/{total} graphs checked\n")
        else:
            return
        last = now
        stream.flush()

    return show


def run_verify(
    engine: str, *, examples: int, seed: int, ops: str | None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the oracle as the command line does; returns the exit status."""
    stdout: TextIO = sys.stdout if out is None else out
    stderr: TextIO = sys.stderr if err is None else err
    try:
        if examples < 1:
            raise ValueError(f"--examples must be at least 1, got {examples}")
        names = parse_ops(ops)
        chosen = load_engine(engine)
    except (ValueError, EngineSpecError) as error:
        stderr.write(f"refgrad: error: {error}\n")
        return 2
    scope = "all ops" if names is None else ", ".join(names)
    stderr.write(f"refgrad verify: {examples} random graphs on {chosen.name}, seed {seed}, {scope}\n")
    try:
        report = verify(chosen, examples=examples, seed_value=seed, ops=names, progress=_progress(stderr))
    except KeyboardInterrupt:
        stderr.write("\nrefgrad: interrupted\n")
        return 130  # the shell's convention for SIGINT
    stdout.write(format_report(report))
    if report.graphs == 0 and report.failure is None:
        stderr.write("refgrad: error: the engine supports none of the ops asked for\n")
        return 2
    return 0 if report.passed else 1
