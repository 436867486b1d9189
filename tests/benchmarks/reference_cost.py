"""The cost per program of each reference, side by side: ``python tests/benchmarks/reference_cost.py``.

The same random programs (hypothesis' ``programs()``, seed 0) are evaluated by the torch reference
(float64, 17 error lanes) and by the exact reference (mpmath), warm (the first 20 programs once
beforehand, so torch's start-up is not counted), and the mean milliseconds per program printed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from hypothesis import HealthCheck, given, seed, settings

from refgrad.oracle import Program
from refgrad.oracle.exact_reference import exact_reference
from refgrad.oracle.strategies import programs
from refgrad.oracle.torch_reference import torch_reference


def drawn_programs(count: int) -> list[Program]:
    """``count`` programs of the default strategy, the same ones every run."""
    found: list[Program] = []

    @seed(0)
    @settings(max_examples=count, database=None, deadline=None, suppress_health_check=tuple(HealthCheck.all()))
    @given(programs())
    def collect(program: Program) -> None:
        found.append(program)

    collect()
    return found[:count]


def milliseconds_per_program(reference: Callable[[Program], object], drawn: list[Program]) -> float:
    """Mean wall time of ``reference`` over ``drawn``, after a warm-up on the first 20."""
    for program in drawn[:20]:
        reference(program)
    began = time.perf_counter()
    for program in drawn:
        reference(program)
    return (time.perf_counter() - began) / len(drawn) * 1e3


def main() -> None:
    """Print each reference's milliseconds per program and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--programs", type=int, default=400)
    count = parser.parse_args().programs
    drawn = drawn_programs(count)
    nodes = sum(program.node_count for program in drawn) / len(drawn)
    torch_ms = milliseconds_per_program(torch_reference, drawn)
    exact_ms = milliseconds_per_program(exact_reference, drawn)
    print(f"{len(drawn)} programs, {nodes:.1f} nodes on average")
    print(f"torch reference   {torch_ms:6.2f} ms per program")
    print(f"exact reference   {exact_ms:6.2f} ms per program  ({exact_ms / torch_ms:.2f}x torch's)")


if __name__ == "__main__":
    main()
