"""Text for people: the per-op table, the summary, and the failure report with its reproducing script."""

from __future__ import annotations

import math
from typing import Final

from refgrad.oracle.findings import BROKEN_OP, DISAGREEMENT, Finding
from refgrad.oracle.runner import OpStats, VerificationReport

__all__ = ["format_broken", "format_failure", "format_report", "format_summary", "format_table"]

_COLUMNS = (
    "op",
    "graphs",
    "value",
    "gradient",
    "fin.diff",
    "domain",
    "forward",
    "2nd order",
    "2nd f.d.",
    "skipped",
    "worst err/tol",
)
_NOT_CHECKED: Final = "-"


def _worst(stats: OpStats) -> str:
    if not stats.checks:
        return "-"
    return "inf" if math.isinf(stats.worst) else f"{stats.worst:.3g}"


def format_table(report: VerificationReport) -> str:
    """One row per op drawn: graphs using it, checks exercising it by kind, skips, worst error / tolerance.

    A check exercises every op it depends on (a node's value: the ops that
    computed it; a gradient: the ops between its node and the output), so
    the columns add up to more than the number of checks. ``forward`` counts
    forward-mode checks (against ``torch.func.jvp`` and the engine's reverse
    mode), ``2nd order`` and ``2nd f.d.`` Hessian entries against torch and
    against finite differences of the engine's gradients; ``-`` means not
    checked in this run (an engine without forward mode, or ``--order 1``).
    """
    rows: list[tuple[str, ...]] = [_COLUMNS]
    second = report.order == 2
    for op, stats in report.stats.items():
        rows.append(
            (
                op,
                str(stats.graphs),
                str(stats.value),
                str(stats.gradient),
                str(stats.finite_difference),
                str(stats.domain),
                str(stats.forward_mode) if report.forward_mode else _NOT_CHECKED,
                str(stats.second_order) if second else _NOT_CHECKED,
                str(stats.second_order_fd) if second else _NOT_CHECKED,
                str(stats.skipped),
                _worst(stats),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines: list[str] = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_summary(report: VerificationReport) -> str:
    """How much was checked, how fast, what was skipped and left out, and the verdict."""
    lines = [
        f"{report.graphs} graphs checked on {report.engine} (seed {report.seed}): "
        f"mean {report.mean_nodes:.1f} nodes, deepest {report.deepest} ops, "
        f"{report.out_of_domain} leaving a domain",
        f"{report.seconds:.1f} s, {report.graphs_per_second:.0f} graphs/s",
    ]
    if report.checks:
        made = ", ".join(
            f"{report.checks.get(kind, 0)} {kind}" for kind in ("value", "gradient", "finite-difference", "domain")
        )
        lines.append(f"checks: {made}")
        if report.forward_mode:
            lines.append(
                f"forward mode: {report.checks.get('forward-mode', 0)} against torch.func.jvp, "
                f"{report.checks.get('forward-vs-reverse', 0)} against reverse mode"
            )
        else:
            lines.append("forward mode: not checked (the engine has none)")
        if report.order == 2:
            lines.append(
                f"second order: {report.checks.get('second-order', 0)} Hessian entries against torch, "
                f"{report.checks.get('second-order-fd', 0)} against finite differences of the engine's gradients"
            )
    if report.skip_reasons:
        skipped = "; ".join(f"{count} {reason}" for reason, count in sorted(report.skip_reasons.items()))
        lines.append(f"skipped: {skipped}")
    if report.unsupported:
        left_out = "; ".join(f"{what}: {reason}" for what, reason in report.unsupported.items())
        lines.append(f"left out (the engine does not support them): {left_out}")
    lines.append(f"op forms checked: {report.forms_checked} of {report.forms_asked}")
    lines += [_finding_line(finding) for finding in report.findings if finding.kind is not DISAGREEMENT]
    if report.passed:
        lines.append("OK: every check agreed with torch (float64) and finite differences")
    else:
        counted = len(report.defects)
        lines.append(
            f"FAILED: {counted} defect{'s' if counted != 1 else ''}"
            + ("; a check disagreed (the shrunk counterexample follows)" if report.failure is not None else "")
        )
    return "\n".join(lines)


def _finding_line(finding: Finding) -> str:
    """One finding: its severity and kind, the summary, and what it means and what to do."""
    return (
        f"{finding.severity.upper()} [{finding.kind.name}] {finding.summary}\n"
        f"  ({finding.kind.meaning}; {finding.kind.advice})"
    )


def format_broken(report: VerificationReport) -> str:
    """Each broken op form: its one-step program (as read and as JSON) and a script reproducing it."""
    blocks: list[str] = []
    for finding in report.findings:
        if finding.kind is not BROKEN_OP or finding.program is None:
            continue
        blocks.append(
            "\n".join(
                [
                    f"broken: {finding.summary}",
                    f"  {finding.program}",
                    f"  program (JSON): {finding.program.to_json()}",
                    "",
                    "reproduce it (engine, then torch):",
                    "",
                    finding.script or "",
                ]
            ).rstrip()
        )
    return "\n\n".join(blocks)


def format_failure(report: VerificationReport) -> str:
    """The shrunk counterexample: what disagreed, the program as JSON, and a script reproducing it."""
    outcome = report.failure
    if outcome is None:
        return ""
    program = outcome.program
    lines = [
        f"counterexample: {len(program.steps)} step(s) on {len(program.inputs)} input(s), {program.node_count} nodes",
        f"  {program}",
    ]
    lines += [f"  disagreement: {check.detail}" for check in outcome.failures[:5]]
    if len(outcome.failures) > 5:
        lines.append(f"  ... and {len(outcome.failures) - 5} more")
    lines += [f"  program (JSON): {program.to_json()}", "", "reproduce it (engine, then torch):", ""]
    lines.append(report.failure_script or "")
    return "\n".join(lines)


def format_report(report: VerificationReport) -> str:
    """Table, summary and (if any) the failure, as ``python -m refgrad verify`` prints them."""
    parts = [format_table(report), "", format_summary(report)]
    broken = format_broken(report)
    if broken:
        parts += ["", broken]
    if report.failure is not None:
        parts += ["", format_failure(report)]
    return "\n".join(parts).rstrip() + "\n"
