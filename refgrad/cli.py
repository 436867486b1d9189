"""The command line: ``python -m refgrad {demo,ops}``.

Exit status 0 on success, 1 when a check disagreed, 2 for usage errors (one
line on standard error, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from refgrad.autodiff import grad
from refgrad.ops import registry
from refgrad.value import Value

__all__ = ["main", "seed_example"]


def seed_example() -> tuple[Value, Value, Value]:
    """micrograd's README expression: returns ``(a, b, g)``."""
    a = Value(-4.0, label="a")
    b = Value(2.0, label="b")
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return a, b, g


def _demo(args: argparse.Namespace) -> int:
    a, b, g = seed_example()
    grad_a, grad_b = grad(g, (a, b))
    print(f"g = {g.data:.4f}")
    print(f"dg/da = {grad_a:.4f}")
    print(f"dg/db = {grad_b:.4f}")
    return 0


def op_table() -> list[tuple[str, ...]]:
    """One row per registry op: name, arity, params, formula, partials, domain, kinks."""
    rows: list[tuple[str, ...]] = [("op", "arity", "params", "forward", "partials", "domain", "kinks (convention)")]
    for spec in registry:
        rows.append(
            (
                spec.name,
                str(spec.arity),
                ", ".join(spec.params) or "-",
                spec.formula,
                "; ".join(spec.partial_formulas),
                spec.domain.description,
                "; ".join(f"input {k.input} at {k.at:g}: {k.convention}" for k in spec.kinks) or "-",
            )
        )
    return rows


def _ops(args: argparse.Namespace) -> int:
    rows = op_table()
    # The last column is free text; align the others.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse declares NoReturn; we exit too
        self.exit(2, f"refgrad: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m refgrad`` argument parser."""
    parser = _Parser(prog="python -m refgrad", description="refgrad: a verified scalar autograd engine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="run micrograd's README example and print its three numbers")
    demo.set_defaults(run=_demo)
    ops = commands.add_parser("ops", help="print the op registry as a table")
    ops.set_defaults(run=_ops)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    status: int = args.run(args)
    return status
