"""Text for people: the per-op table, the summary, and the failure report with its reproducing script."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Final

from refgrad.ops import registry
from refgrad.oracle.engines import Engine, MicrogradStyleEngine, printable
from refgrad.oracle.findings import BROKEN_OP, LITTLE_CHECKED, Finding
from refgrad.oracle.runner import OpStats, VerificationReport, verify

__all__ = [
    "check_engine",
    "format_findings",
    "format_junit",
    "format_report",
    "format_summary",
    "format_table",
    "format_verdict",
    "table_rows",
]

TABLE_COLUMNS: Final = (
    "op",
    "status",
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
    "value ulps",
    "grad ulps",
)
_NOT_CHECKED: Final = "-"


def _worst(stats: OpStats) -> str:
    if not stats.checks:
        return "-"
    return "inf" if math.isinf(stats.worst) else f"{stats.worst:.3g}"


def _ulps(ulps: float | None) -> str:
    if ulps is None:
        return _NOT_CHECKED
    return "inf" if math.isinf(ulps) else f"{ulps:.2g}"


def _against(report: VerificationReport) -> str:
    """The references of the run in words."""
    return {
        "torch": "torch (float64)",
        "mpmath": "the exact reference (mpmath)",
        "both": "torch (float64), the exact reference (mpmath)",
    }[report.references]


def _status(report: VerificationReport, op: str) -> str:
    status = report.status(op)
    return "DEFECT" if status == "defect" else status


def table_rows(report: VerificationReport) -> list[tuple[str, ...]]:
    """The per-op table's rows as text cells, under the headings ``TABLE_COLUMNS`` (see :func:`format_table`)."""
    rows: list[tuple[str, ...]] = []
    second = report.order == 2
    named = {finding.op for finding in report.findings if finding.op is not None}
    # Registry order, then the caller's own ops (verify's extra_ops) in the order the run drew them.
    builtin = {name: position for position, name in enumerate(registry.names)}
    shown_ops = dict.fromkeys([*report.stats, *sorted(named)])
    for op in sorted(shown_ops, key=lambda name: builtin.get(name, len(builtin))):
        stats = report.stats.get(op, OpStats())
        rows.append(
            (
                op,
                _status(report, op),
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
                _ulps(stats.value_ulps),
                _ulps(stats.gradient_ulps),
            )
        )
    return rows


def format_table(report: VerificationReport) -> str:
    """One row per op drawn: its status, graphs using it, checks exercising it by kind, skips, worst error / tolerance.

    ``status`` is ``DEFECT`` or ``warning`` when a finding names the op (findings about
    compositions name no op), ``ok`` otherwise; ``worst err/tol`` is the closest call among
    the checks that agreed (those that did not are the findings). ``value ulps`` and ``grad ulps``
    are the worst errors, in ulps of the exact result, of the values the op alone computed and of
    the gradients through the op alone that agreed with the exact reference (``-``: none were
    checked against it, as in a run with ``--reference torch``).

    A check exercises every op it depends on (a node's value: the ops that
    computed it; a gradient: the ops between its node and the output), so
    the columns add up to more than the number of checks. ``forward`` counts
    forward-mode checks (against torch's forward mode and the engine's reverse
    mode), ``2nd order`` and ``2nd f.d.`` Hessian entries against torch and
    against finite differences of the engine's gradients; ``-`` means not
    checked in this run (an engine without forward mode, or ``--order 1``).
    An op that a defect left out of every program (a method that raises or returns nothing) has
    its row too, with nothing counted.
    """
    rows = [TABLE_COLUMNS, *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines: list[str] = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_verdict(report: VerificationReport) -> str:
    """The card's first line: pass or fail, how many defects and warnings, how much was checked."""
    defects, warnings = len(report.defects), len(report.warnings)
    counts = f"{defects} defect{'s' if defects != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
    checked = (
        f"{report.forms_checked} of {report.forms_asked} op forms, {report.structured} structured programs, "
        f"{report.graphs} random graphs"
    )
    strict = " (--strict: warnings fail too)" if report.strict else ""
    return f"{report.verdict.upper()}: {report.engine}: {counts}{strict}; checked {checked}"


def format_summary(report: VerificationReport) -> str:
    """How much was checked, how fast, what was skipped and left out, each finding, and the verdict."""
    lines = [
        f"{report.graphs} graphs checked on {report.engine} (seed {report.seed}): "
        f"mean {report.mean_nodes:.1f} nodes, deepest {report.deepest} ops, "
        f"{report.out_of_domain} leaving a domain",
        f"{report.structured} structured programs first: each op form alone at ordinary points, "
        "at its kinks and at edge inputs; shared nodes; chains",
        f"{report.total_seconds:.1f} s in all; random graphs {report.seconds:.1f} s, "
        f"{report.graphs_per_second:.0f} graphs/s" + _where(report),
    ]
    if report.shard is not None:
        lines.append(
            f"shard {report.shard} of a campaign of {report.requested} random graphs: {report.blocks} of its "
            f"blocks (python -m refgrad merge adds the shards' JSON reports up; structured programs count in shard 1)"
        )
    if report.random_skipped is not None:
        lines.append(f"random graphs: none drawn: {report.random_skipped} for the same reason")
    if report.checks:
        made = ", ".join(
            f"{report.checks.get(kind, 0)} {kind}" for kind in ("value", "gradient", "finite-difference", "domain")
        )
        lines.append(f"checks: {made}")
        if report.checks_by_reference:
            per = ", ".join(f"{count} {name}" for name, count in sorted(report.checks_by_reference.items()))
            lines.append(f"numbers checked against: {per}")
        if report.forward_mode:
            lines.append(
                f"forward mode: {report.checks.get('forward-mode', 0)} against "
                f"{'mpmath' if report.references == 'mpmath' else 'torch'}'s forward mode, "
                f"{report.checks.get('forward-vs-reverse', 0)} against reverse mode"
            )
        else:
            lines.append("forward mode: not checked (the engine has none)")
        if report.order == 2:
            lines.append(
                f"second order: {report.checks.get('second-order', 0)} Hessian entries against torch, "
                f"{report.checks.get('second-order-fd', 0)} against finite differences of the engine's gradients"
            )
    if report.accumulation is not None:
        lines.append(_accumulation_line(report.accumulation))
    if report.skip_reasons:
        skipped = "; ".join(f"{count} {reason}" for reason, count in sorted(report.skip_reasons.items()))
        lines.append(f"skipped: {skipped}")
    if report.unsupported:
        left_out = "; ".join(f"{what}: {reason}" for what, reason in report.unsupported.items())
        lines.append(f"left out (the engine does not support them): {left_out}")
    lines.append(f"op forms checked: {report.forms_checked} of {report.forms_asked}")
    lines += [_finding_line(finding) for finding in report.findings]
    lines.append(_closing_line(report))
    return "\n".join(lines)


def _where(report: VerificationReport) -> str:
    """Where the random graphs were checked, when not in one process."""
    if report.shards > 1:
        return f" (merged from {report.shards} shards; seconds summed over them)"
    return f" on {report.jobs} processes" if report.jobs > 1 else ""


def _accumulation_line(checked: tuple[str, ...]) -> str:
    if not checked:
        return "backward() more than once: not checked (it needs a binary op on two nodes that passed alone)"
    also = "" if "after zero_grad()" in checked else "; zero_grad(): the nodes have none"
    return f"backward() more than once, against torch's accumulation: {', '.join(checked)}{also}"


def _closing_line(report: VerificationReport) -> str:
    defects, warnings = len(report.defects), len(report.warnings)
    plural = "s" if warnings != 1 else ""
    if not report.findings:
        return f"OK: every check agreed with {_against(report)} and finite differences"
    if report.passed:
        return (
            f"PASSED with {warnings} warning{plural}: no defect; the warnings say where the engine is fragile "
            "(--strict fails on them)"
        )
    if defects == 0:
        return f"FAILED (--strict): {warnings} warning{plural}"
    also = f", {warnings} warning{plural}" if warnings else ""
    return f"FAILED: {defects} defect{'s' if defects != 1 else ''}{also}"


def _finding_line(finding: Finding) -> str:
    """One finding: its severity and kind, the summary, and what it means and what to do."""
    return (
        f"{finding.severity.upper()} [{finding.kind.name}] {finding.summary}\n"
        f"  ({finding.kind.meaning}; {finding.kind.advice})"
    )


def format_findings(report: VerificationReport) -> str:
    """Each finding with a program: the program (as read and as JSON), what disagreed, and for defects a script.

    Defects come first, each with a standalone script that runs the program on the engine and on
    torch; a warning shows its program and the JSON to check it again with ``--program``.
    """
    blocks: list[str] = []
    for number, finding in enumerate(report.findings, start=1):
        program = finding.program
        if program is None:
            continue
        title = "counterexample" if finding.kind is not BROKEN_OP else "broken"
        lines = [
            f"{title}: {finding.severity} {number} [{finding.kind.name}]: {len(program.steps)} step(s) on "
            f"{len(program.inputs)} input(s), {program.node_count} nodes",
            f"  {program}" if len(program.steps) <= 40 else f"  a program of {len(program.steps)} steps",
        ]
        outcome = finding.outcome
        if outcome is not None:
            lines += [f"  disagreement: {check.detail}" for check in outcome.failures[:5]]
            if len(outcome.failures) > 5:
                lines.append(f"  ... and {len(outcome.failures) - 5} more")
            if outcome.engine_failure is not None and not outcome.failures:
                lines.append(f"  the engine: {outcome.engine_failure.describe()}")
        else:
            # Read back from JSON (verify's report merged from shards): the lines it kept.
            details = finding.details
            lines += [
                f"  {line}" if line.startswith("the engine: ") else f"  disagreement: {line}" for line in details[:5]
            ]
            if len(details) > 5:
                lines.append(f"  ... and {len(details) - 5} more")
        if len(program.steps) <= 40:
            lines.append(f"  program (JSON): {program.to_json()}")
        if finding.severity == "defect" and finding.script is not None:
            lines += ["", "reproduce it (engine, then the reference):", "", finding.script]
        blocks.append("\n".join(lines).rstrip())
    return "\n\n".join(blocks)


def format_report(report: VerificationReport) -> str:
    """Verdict, table, summary and each finding, as ``python -m refgrad verify`` prints them."""
    parts = [format_verdict(report), "", format_table(report), "", format_summary(report)]
    findings = format_findings(report)
    if findings:
        parts += ["", findings]
    return "\n".join(parts).rstrip() + "\n"


def _junit_case(suite: ET.Element, name: str, failures: Sequence[Finding], warnings: Sequence[Finding]) -> None:
    case = ET.SubElement(suite, "testcase", classname="refgrad.verify", name=name)
    if failures:
        first = failures[0]
        failure = ET.SubElement(case, "failure", message=printable(first.summary), type=first.kind.name)
        failure.text = "\n".join(
            f"{finding.severity} [{finding.kind.name}] {printable(finding.summary)}"
            + (f"\n  program (JSON): {finding.program.to_json()}" if finding.program is not None else "")
            for finding in failures
        )
    if warnings:
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"warning [{finding.kind.name}] {printable(finding.summary)}" for finding in warnings)


def format_junit(report: VerificationReport) -> str:
    """The card as JUnit XML: a testcase per op form (checked or broken), per unsupported form (skipped), and more.

    A testcase fails on the defects about it (under ``strict``, on its warnings too); other
    warnings are its ``system-out``. Findings about no op (compositions, the deep chain, a
    nondeterministic backward) belong to the ``compositions`` testcase; ``coverage`` carries the
    little-checked warning. Everything the engine wrote is escaped by the XML writer.
    """
    suite = ET.Element(
        "testsuite",
        name=f"refgrad verify {report.engine}",
        tests="0",
        failures="0",
        errors="0",
        skipped=str(len(report.unsupported)),
        time=f"{report.total_seconds:.3f}",
    )

    def split(findings: Sequence[Finding]) -> tuple[list[Finding], list[Finding]]:
        failing = [f for f in findings if f.severity == "defect" or report.strict]
        return failing, [f for f in findings if f not in failing]

    placed: set[int] = set()
    broken = [f.form for f in report.findings if f.kind is BROKEN_OP and f.form is not None]
    for form in dict.fromkeys([*report.checked, *broken]):
        op = form.split(" ", 1)[0]
        mine = [f for f in report.findings if f.op == op and f.form in (form, None) and id(f) not in placed]
        # A finding naming the op but no form (from a random program) goes with the op's first form.
        placed.update(id(f) for f in mine)
        _junit_case(suite, form, *split(mine))
    for form, reason in report.unsupported.items():
        case = ET.SubElement(suite, "testcase", classname="refgrad.verify", name=form)
        ET.SubElement(case, "skipped", message=f"unsupported: {printable(reason)}")
    rest = [f for f in report.findings if id(f) not in placed and f.kind is not LITTLE_CHECKED]
    _junit_case(suite, "compositions", *split(rest))
    _junit_case(suite, "coverage", *split([f for f in report.findings if f.kind is LITTLE_CHECKED]))
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for case in cases if case.find("failure") is not None)))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def check_engine(
    engine: Engine | type[object],
    *,
    examples: int = 1000,
    seed_value: int = 0,
    ops: Iterable[str] | None = None,
    strict: bool = False,
) -> VerificationReport:
    """One call for a test suite: verify ``engine`` (an ``Engine``, or a micrograd-style class) and return the card.

    Raises ``AssertionError`` whose message is the whole card when the run fails (a defect;
    under ``strict``, any finding), so pytest shows every finding with its counterexample::

        def test_my_engine():
            check_engine(mymodule.Value, examples=500)
    """
    chosen = MicrogradStyleEngine(engine) if isinstance(engine, type) else engine
    report = verify(chosen, examples=examples, seed_value=seed_value, ops=ops, strict=strict)
    if not report.passed:
        raise AssertionError(format_report(report))
    return report
