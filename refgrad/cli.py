"""The command line: ``python -m refgrad {demo,ops,train,verify,merge}``.

Exit status 0 on success, 1 when a check disagreed, 2 for usage errors (one
line on standard error, no traceback).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from refgrad.autodiff import grad
from refgrad.ops import OpSpec, registry
from refgrad.ops.extra import extra_ops_argument, load_ops, with_extras
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
    if args.graph is not None:
        from refgrad.viz import save

        try:
            written = save(g, args.graph, g.backward())
        except (ImportError, RuntimeError, ValueError, OSError) as error:
            print(f"refgrad: error: {error}", file=sys.stderr)
            return 2
        print(f"graph written to {written}")
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train(args: argparse.Namespace) -> int:
    import importlib.util
    from pathlib import Path

    from refgrad.moons import DEMO_EXTRA_HINT, ProgressBar, plot, train

    # Refuse a plot we cannot make before spending the training time.
    if args.plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            print(f"refgrad: error: --plot needs matplotlib: {DEMO_EXTRA_HINT}", file=sys.stderr)
            return 2
        if not Path(args.plot).resolve().parent.is_dir():
            print(f"refgrad: error: --plot: no directory to write {args.plot!r} into", file=sys.stderr)
            return 2
    bar = ProgressBar(args.steps)
    try:
        run = train(steps=args.steps, seed=args.seed, on_step=bar.update)
    except KeyboardInterrupt:
        bar.close()
        print("refgrad: interrupted", file=sys.stderr)
        return 130  # the shell's convention for SIGINT
    bar.close()
    if args.plot is not None:
        try:
            plot(run, args.plot)
        except (ImportError, OSError) as error:
            print(f"refgrad: error: {error}", file=sys.stderr)
            return 2
        print(f"plot written to {args.plot}")
    print(f"final loss {run.final_loss:.6f}, accuracy {run.final_accuracy:.1%} after {args.steps} steps")
    return 0


def op_table(extra: Iterable[OpSpec] = ()) -> list[tuple[str, ...]]:
    """One row per op: name, arity, params, formula, partials, torch counterpart, domain, kinks.

    The registry's ops, then ``extra`` (ops of your own, checked: see :mod:`refgrad.ops.extra`).
    """
    rows: list[tuple[str, ...]] = [
        ("op", "arity", "params", "forward", "partials", "torch", "domain", "kinks (convention)")
    ]
    for spec in with_extras(registry, extra_ops_argument(extra, registry)):
        rows.append(
            (
                spec.name,
                str(spec.arity),
                ", ".join(spec.params) or "-",
                spec.formula,
                "; ".join(spec.partial_formulas),
                spec.torch or "-",
                spec.domain.description,
                "; ".join(f"input {k.input} at {k.at:g}: {k.convention}" for k in spec.kinks) or "-",
            )
        )
    return rows


def _ops(args: argparse.Namespace) -> int:
    try:
        rows = op_table(() if args.ops_from is None else load_ops(args.ops_from, registry))
    except ValueError as error:
        print(f"refgrad: error: {error}", file=sys.stderr)
        return 2
    # The last column is free text; align the others.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0


VERIFY_EXAMPLES = 10_000
"""Graphs ``python -m refgrad verify`` checks by default."""


def _conflicting_verify_options(args: argparse.Namespace) -> str | None:
    """Why the options cannot go together (one line), or None: an option that would be ignored is refused."""
    if args.no_database and args.database is not None:
        return "--database and --no-database do not go together"
    random_run = [
        flag
        for flag, value in (
            ("--ops", args.ops),
            ("--ops-from", args.ops_from),
            ("--seed", args.seed),
            ("--examples", args.examples),
            ("--html", args.html),
            ("--jobs", args.jobs),
            ("--shard", args.shard),
        )
        if value is not None
    ]
    if random_run and args.program is not None:
        return f"--program checks one file, no random graphs: drop {', '.join(random_run)}"
    if random_run and args.replay:
        return f"--replay checks the stored counterexamples, no random graphs: drop {', '.join(random_run)}"
    return _engine_cmd_conflict(args, random_run)


def _engine_cmd_conflict(args: argparse.Namespace, random_run: list[str]) -> str | None:
    """Why ``--engine-cmd`` or ``--protocol-check`` cannot go with the other options given; or None."""
    if args.engine_cmd is None:
        return "--protocol-check checks an adapter: it needs --engine-cmd" if args.protocol_check else None
    python_only = [
        flag
        for flag, given in (
            ("--engine", args.engine is not None),
            ("--ops-from", args.ops_from is not None),
            ("--isolate/--no-isolate", args.isolate is not None),
            ("--data", args.data != "data"),
            ("--grad", args.grad != "grad"),
            ("--backward", args.backward != "backward"),
        )
        if given
    ]
    if python_only:
        return f"--engine-cmd runs an adapter, not a Python class: drop {', '.join(python_only)}"
    if args.protocol_check:
        extra = [
            *random_run,
            *(flag for flag, given in (("--program", args.program), ("--replay", args.replay)) if given),
        ]
        if extra:
            return f"--protocol-check sends its own programs: drop {', '.join(extra)}"
    return None


def _cache_directory() -> Path:
    """refgrad's folder in the user's cache directory (``$XDG_CACHE_HOME``, or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "refgrad"


def _torch_installed() -> bool:
    # Without importing refgrad.oracle, which imports torch where it is installed (outside the filter below).
    if "torch" in sys.modules:
        return sys.modules.get("torch") is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _verify(args: argparse.Namespace) -> int:
    conflict = _conflicting_verify_options(args)
    if conflict is not None:
        print(f"refgrad: error: {conflict}", file=sys.stderr)
        return 2
    if args.protocol_check:
        from refgrad.oracle.protocol import protocol_check
        from refgrad.oracle.worker import DEFAULT_TIMEOUT, timeout_argument

        try:
            timeout = timeout_argument(args.timeout)
        except ValueError as error:  # a --timeout that is no time limit
            print(f"refgrad: error: {error}", file=sys.stderr)
            return 2
        return protocol_check(args.engine_cmd, sys.stdout, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    # hypothesis keeps a cache (the literals it reads from the loaded modules) in .hypothesis/ under
    # the current directory: for a user checking an engine that is their folder, so the cache goes
    # to their cache directory instead, unless they chose a place for it.
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(_cache_directory() / "hypothesis"))
    # hypothesis and mpmath (the exact extra) and torch (the oracle extra, for --reference torch or
    # both): import them only here, so the other commands work without them.
    try:
        import hypothesis
        import mpmath
    except ImportError as error:
        hint = "pip install 'refgrad[exact]' (or 'refgrad[oracle]', which adds torch)"
        print(f"refgrad: error: verify needs hypothesis and mpmath: {hint} ({error})", file=sys.stderr)
        return 2
    del hypothesis, mpmath  # imported only to tell a missing extra from a broken oracle
    if args.reference in ("torch", "both") or (args.reference is None and _torch_installed()):
        try:
            with warnings.catch_warnings():
                # torch warns on import when NumPy is missing; the oracle does not need NumPy.
                warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
                import torch
        except ImportError as error:
            hint = "pip install 'refgrad[oracle]', or check against the exact reference alone: --reference mpmath"
            print(f"refgrad: error: --reference {args.reference} needs torch: {hint} ({error})", file=sys.stderr)
            return 2
        del torch
    from refgrad.oracle.command import run_verify
    from refgrad.oracle.database import DEFAULT_DATABASE

    return run_verify(
        args.engine or "refgrad",
        examples=VERIFY_EXAMPLES if args.examples is None else args.examples,
        seed=0 if args.seed is None else args.seed,
        ops=args.ops,
        ops_from=args.ops_from,
        references=args.reference,
        timeout=args.timeout,
        isolate=args.isolate,
        database=None if args.no_database else (args.database or DEFAULT_DATABASE),
        replay=args.replay,
        program=args.program,
        order=args.order,
        data=args.data,
        grad=args.grad,
        backward=args.backward,
        strict=args.strict,
        output_format=args.format,
        html=args.html,
        jobs=args.jobs,
        shard=args.shard,
        engine_cmd=args.engine_cmd,
    )


def _merge(args: argparse.Namespace) -> int:
    from refgrad.oracle.command import run_merge  # the oracle's imports only where they are used

    return run_merge(args.reports, output_format=args.format, html=args.html)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse declares NoReturn; we exit too
        self.exit(2, f"refgrad: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m refgrad`` argument parser."""
    parser = _Parser(prog="python -m refgrad", description="refgrad: a verified scalar autograd engine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="run micrograd's README example and print its three numbers")
    demo.add_argument("--graph", metavar="PATH", help="also draw the example's graph (.svg, .png, .pdf, or .dot)")
    demo.set_defaults(run=_demo)
    train = commands.add_parser("train", help="train an MLP on two moons with micrograd's demo recipe")
    train.add_argument("--steps", type=_at_least_one, default=100, help="gradient descent steps (default 100)")
    train.add_argument("--seed", type=int, default=1337, help="seed for the data and the weights (default 1337)")
    train.add_argument("--plot", metavar="PATH", help="write a PNG of the decision boundary and the loss curve")
    train.set_defaults(run=_train)
    ops = commands.add_parser("ops", help="print the op registry as a table")
    ops.add_argument("--ops-from", metavar="MODULE", help="also your own ops: the module's OPS, a tuple of OpSpec")
    ops.set_defaults(run=_ops)
    verify = commands.add_parser("verify", help="check gradients on random graphs against torch and finite differences")
    verify.add_argument(
        "--engine",
        help="refgrad (default), micrograd-compat, or MODULE:CLASS (a micrograd-style class, or a function making one)",
    )
    verify.add_argument(
        "--engine-cmd",
        metavar="COMMAND",
        help="an engine in any language: the adapter COMMAND starts speaks refgrad's JSON-lines protocol "
        "(docs/protocol.md)",
    )
    verify.add_argument(
        "--protocol-check",
        action="store_true",
        help="with --engine-cmd: check that the adapter follows the protocol (its answers' form, not its numbers)",
    )
    # No defaults here (they are filled in by _verify): an option given with --program or --replay is refused.
    verify.add_argument("--examples", type=int, help=f"graphs to check (default {VERIFY_EXAMPLES})")
    verify.add_argument("--seed", type=int, help="the run's seed (default 0): same seed, same run")
    verify.add_argument("--ops", metavar="LIST", help="comma-separated ops to draw (default: every op in the registry)")
    verify.add_argument(
        "--ops-from",
        metavar="MODULE",
        help="also draw your own ops, the module's OPS (a tuple of refgrad.ops.OpSpec), on refgrad's engine",
    )
    verify.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="time limit per program for an engine in a worker process (default 5); implies --isolate",
    )
    verify.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the engine in a worker process (default: yes for MODULE:CLASS, no for the built-in engines)",
    )
    verify.add_argument(
        "--database",
        metavar="PATH",
        help="where counterexamples are kept and replayed from first (default .refgrad/examples)",
    )
    verify.add_argument("--no-database", action="store_true", help="neither replay nor store counterexamples")
    verify.add_argument("--replay", action="store_true", help="only re-check the stored counterexamples")
    verify.add_argument(
        "--program", metavar="FILE", help="only check the program in FILE (its JSON, or a stored entry)"
    )
    verify.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: also check second derivatives (engines that differentiate their own gradients; default 1)",
    )
    verify.add_argument(
        "--reference",
        choices=("torch", "mpmath", "both"),
        default=None,
        help="check against torch float64, the exact reference (mpmath, 77 digits; needs no torch) or both "
        "(default: both where torch is installed, else mpmath)",
    )
    names = "of a micrograd-style MODULE:CLASS"
    verify.add_argument("--data", default="data", help=f"the attribute holding a node's value ({names}; default data)")
    verify.add_argument(
        "--grad", default="grad", help=f"the attribute holding a node's gradient ({names}; default grad)"
    )
    verify.add_argument(
        "--backward", default="backward", help=f"the method differentiating the output ({names}; default backward)"
    )
    verify.add_argument(
        "--strict",
        action="store_true",
        help="fail on warnings too (fragile formulas at edge inputs, other kink conventions, accuracy)",
    )
    verify.add_argument(
        "--format",
        choices=("text", "json", "junit"),
        default="text",
        help="text: the report card (default); json: one JSON object; junit: JUnit XML (on standard output)",
    )
    verify.add_argument(
        "--html",
        metavar="PATH",
        help="also write the card as one self-contained HTML page, each counterexample's graph drawn",
    )
    verify.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes checking the random graphs (default: one per core, for 1,000 graphs a core or more); "
        "the report is the same for any N",
    )
    verify.add_argument(
        "--shard",
        metavar="K/N",
        help="check only the K-th of N parts of the campaign (for a CI matrix); "
        "python -m refgrad merge adds the parts' JSON reports up",
    )
    verify.set_defaults(run=_verify)

    merge = commands.add_parser(
        "merge", help="add up the JSON reports of a campaign's shards (verify --shard K/N --format json) into one card"
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT.json", help="every shard's report, each once")
    merge.add_argument(
        "--format",
        choices=("text", "json", "junit"),
        default="text",
        help="text: the report card (default); json: one JSON object; junit: JUnit XML (on standard output)",
    )
    merge.add_argument("--html", metavar="PATH", help="also write the merged card as one HTML page")
    merge.set_defaults(run=_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    status: int = args.run(args)
    return status
