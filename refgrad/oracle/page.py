"""The report card as one self-contained HTML page (``verify --html PATH``), each counterexample drawn as a graph.

The page holds what the terminal card holds (the verdict, the per-op table,
each finding with its meaning, its program and its reproducing script, the
summary) and draws each counterexample's graph: every node with the engine's
and torch's value and gradient, the nodes whose checks disagreed in orange, and
the first disagreement (see :func:`first_disagreement`) in red.

Everything on it that came from the engine (its name, its messages, its
numbers' reprs inside findings) is escaped, and the page declares a content
security policy that allows no script and no fetch at all: a grader opening a
student's card runs nothing the student wrote. It needs no file beside it.
"""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from refgrad.oracle.checks import Check, Outcome
from refgrad.oracle.engines import printable
from refgrad.oracle.findings import Finding
from refgrad.oracle.program import Program, Ref
from refgrad.oracle.report import TABLE_COLUMNS, format_summary, format_verdict, table_rows
from refgrad.oracle.runner import VerificationReport

__all__ = ["MAX_DRAWN_NODES", "first_disagreement", "format_html", "html_argument", "write_html"]

MAX_DRAWN_NODES: Final = 60
"""Counterexamples with more nodes are not drawn (their program text and JSON still are)."""

_OWN_NODE: Final = frozenset({"value", "gradient", "domain", "finite-difference"})
"""Check kinds whose node is the node they are about."""
_SHOWN_STEPS: Final = 40  # a longer program's text is folded away, as the terminal card leaves it out

_BOX_WIDTH: Final = 230
_BOX_HEIGHT: Final = 62
_COLUMN_GAP: Final = 56
_ROW_GAP: Final = 16
_MARGIN: Final = 16

_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; } h3 { font-size: 1em; }
.verdict { font-size: 1.1em; font-weight: 600; padding: .6em .8em; border-radius: 4px; }
.pass { background: #e6f4ea; } .fail { background: #fce8e6; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: right; }
th:first-child, td:first-child, td.status { text-align: left; }
td.DEFECT { background: #fce8e6; font-weight: 600; } td.warning { background: #fef7e0; }
section.finding { border-left: 4px solid #999; padding: .1em 1em; margin: 1.5em 0; }
section.defect { border-color: #d93025; } section.warning { border-color: #f9ab00; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .85em; white-space: pre-wrap; }
.meaning { color: #444; } svg { max-width: 100%; height: auto; }
svg text { font-family: ui-monospace, monospace; font-size: 11px; }
"""


def first_disagreement(outcome: Outcome) -> int | None:
    """The node a counterexample's disagreement starts at, or None when no check names a node.

    A wrong value: the first node (in forward order) whose value disagrees, since
    every later value inherits it. Otherwise a wrong gradient: the first node in
    reverse order (the highest-numbered) whose gradient disagrees, since no
    checked node it feeds disagrees, so the rule that passed it on is the
    suspect. Otherwise the node of any other disagreeing check (a domain
    signal, a finite difference at an input). Forward-mode and second-order
    checks mark no node: they name the output or an input, not a node that went wrong.
    """
    check = _first_check(outcome)
    return None if check is None else check.node


def _first_check(outcome: Outcome) -> Check | None:
    """The disagreeing check :func:`first_disagreement` reads its node from."""
    # Forward-mode and second-order checks name the output or an input row, not where they went wrong.
    named = [c for c in outcome.failures if c.node is not None and c.kind in _OWN_NODE]
    values = [c for c in named if c.kind == "value"]
    if values:
        return min(values, key=lambda c: c.node or 0)
    gradients = [c for c in named if c.kind == "gradient"]
    if gradients:
        return max(gradients, key=lambda c: c.node or 0)
    return named[0] if named else None


@dataclass(frozen=True, slots=True)
class _Node:
    label: str
    value: Check | None
    gradient: Check | None
    failed: bool


def _number(x: float | None) -> str:
    return "?" if x is None else f"{x:.6g}"


def _pair(what: str, check: Check | None, *, otherwise: str = "-") -> str:
    """``value 0.5`` when engine and torch agree to 6 digits and the check passed, else ``value e 0.5 | torch 0.25``."""
    if check is None or check.got is None:
        return f"{what} {otherwise}"
    engine, torch = _number(check.got), _number(check.expected)
    if engine == torch and not check.passed:
        # Disagreeing beyond six digits (an accuracy warning): as many digits as tell them apart.
        engine, torch = repr(check.got), repr(check.expected)
    return f"{what} {engine}" if engine == torch else f"{what} e {engine} | torch {torch}"


def _levels(program: Program) -> list[int]:
    """Each node's column: 0 for inputs, else one more than its deepest operand."""
    levels = [0] * len(program.inputs)
    for step in program.steps:
        levels.append(1 + max((levels[o.node] for o in step.operands if isinstance(o, Ref)), default=0))
    return levels


def _labels(program: Program) -> list[str]:
    """Each node as the program text writes it: ``x0 = 0.5`` for an input, ``n2 = x0 * x1`` for a step."""
    return [f"x{i} = {value!r}" for i, value in enumerate(program.inputs)] + program.expression_lines()


def _nodes(program: Program, outcome: Outcome) -> list[_Node]:
    by_kind: dict[tuple[str, int], Check] = {}
    for check in outcome.checks:
        if check.node is not None and check.kind in ("value", "gradient"):
            by_kind.setdefault((check.kind, check.node), check)
    # Orange only where a check about the node itself disagreed (not forward mode's output).
    failed = {c.node for c in outcome.failures if c.node is not None and c.kind in _OWN_NODE}
    return [
        _Node(label, by_kind.get(("value", node)), by_kind.get(("gradient", node)), node in failed)
        for node, label in enumerate(_labels(program))
    ]


def _first_words(program: Program, outcome: Outcome) -> str:
    """Where the disagreement starts, in words: the node, the two numbers, the rule that computed or passed it on."""
    check = _first_check(outcome)
    if check is None or check.node is None:
        return ""
    first = check.node
    labels = _labels(program)
    numbers = ""
    if check.got is not None:
        numbers = f" (engine {check.got!r}, torch {check.expected!r})"
    name = labels[first].split(" = ", 1)[0]
    kind = check.kind
    if kind == "value":
        return f"First disagreement: {name}'s value{numbers}, computed by {labels[first]}."
    if kind == "gradient":
        live = program.live()
        users = [labels[user] for user in dict.fromkeys(program.consumers()[first]) if live[user]]
        rule = f", passed on by {' and by '.join(users)}" if users else ""
        return f"First disagreement: d output / d {name}{numbers}{rule}."
    return f"First disagreement: at {name}: {check.detail}."


def _svg(program: Program, outcome: Outcome, marker: str) -> str:
    """The counterexample's graph: a column per depth, an edge per operand, the first disagreement in red."""
    nodes = _nodes(program, outcome)
    first = first_disagreement(outcome)
    levels = _levels(program)
    rows: dict[int, int] = {}
    position: list[tuple[int, int]] = []
    for level in levels:
        row = rows.get(level, 0)
        rows[level] = row + 1
        x = _MARGIN + level * (_BOX_WIDTH + _COLUMN_GAP)
        position.append((x, _MARGIN + row * (_BOX_HEIGHT + _ROW_GAP)))
    width = _MARGIN * 2 + (max(levels) + 1) * (_BOX_WIDTH + _COLUMN_GAP) - _COLUMN_GAP
    height = _MARGIN * 2 + max(rows.values()) * (_BOX_HEIGHT + _ROW_GAP) - _ROW_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="the counterexample\'s graph">',
        f'<defs><marker id="{marker}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>',
    ]
    count = len(program.inputs)
    skips = 0
    for index, step in enumerate(program.steps):
        x1, y1 = position[count + index]
        for operand in dict.fromkeys(o.node for o in step.operands if isinstance(o, Ref)):
            x0, y0 = position[operand]
            sx, sy, ex, ey = x0 + _BOX_WIDTH, y0 + _BOX_HEIGHT // 2, x1, y1 + _BOX_HEIGHT // 2
            if levels[count + index] - levels[operand] == 1:
                middle = (sx + ex) // 2
                path = f"M{sx},{sy} C{middle},{sy} {middle},{ey} {ex},{ey}"
            else:
                # Past a column: along the gap above the boxes, so that no box hides the edge.
                lane = min(y0, y1) - 4 - 3 * (skips % 3)
                skips += 1
                path = f"M{sx},{sy} L{sx + 14},{sy} L{sx + 14},{lane} L{ex - 14},{lane} L{ex - 14},{ey} L{ex},{ey}"
            parts.append(f'<path d="{path}" fill="none" stroke="#888" stroke-width="1.2" marker-end="url(#{marker})"/>')
    for number, (node, (x, y)) in enumerate(zip(nodes, position, strict=True)):
        marked = number == first
        fill = "#fce8e6" if marked else "#fff4e0" if node.failed else "#ffffff"
        stroke, stroke_width = ("#d93025", 3) if marked else ("#f9ab00", 2) if node.failed else ("#555", 1)
        hover = [node.label]
        for what, check in (("value", node.value), ("d output / d node", node.gradient)):
            if check is not None and check.got is not None:
                hover.append(f"{what}: engine {check.got!r}, torch {check.expected!r}")
        if marked:
            hover.append("the first disagreement")
        label = node.label if len(node.label) <= 32 else node.label[:31] + "\u2026"
        value = _number(program.inputs[number]) if number < count else "-"
        gradient = "1 (the output)" if number == program.output else "- (not checked)"
        lines = [label, _pair("value", node.value, otherwise=value), _pair("grad", node.gradient, otherwise=gradient)]
        parts.append(f"<g><title>{_escape(chr(10).join(hover))}</title>")
        parts.append(
            f'<rect x="{x}" y="{y}" width="{_BOX_WIDTH}" height="{_BOX_HEIGHT}" rx="5" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"/>'
        )
        for line_number, line in enumerate(lines):
            weight = ' font-weight="bold"' if line_number == 0 else ""
            parts.append(f'<text x="{x + 8}" y="{y + 17 + 18 * line_number}"{weight}>{_escape(line)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    """``text`` for the page: control characters shown escaped (line breaks kept), markup characters as entities."""
    return html.escape("\n".join(printable(line) for line in text.split("\n")), quote=True)


def _table(report: VerificationReport) -> str:
    head = "".join(f"<th>{_escape(column)}</th>" for column in TABLE_COLUMNS)
    body: list[str] = []
    for row in table_rows(report):
        op, status, *rest = row
        cells = "".join(f"<td>{_escape(cell)}</td>" for cell in rest)
        body.append(
            f'<tr><td>{_escape(op)}</td><td class="status {_escape(status)}">{_escape(status)}</td>{cells}</tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _finding(number: int, finding: Finding) -> str:
    where = f" {finding.op}" if finding.op is not None else ""
    parts = [
        f'<section class="finding {finding.severity}" id="finding-{number}">',
        f"<h3>{finding.severity} {number} [{_escape(finding.kind.name)}]{_escape(where)}</h3>",
        f"<p>{_escape(finding.summary)}</p>",
        f'<p class="meaning">{_escape(finding.kind.meaning)}; {_escape(finding.kind.advice)}</p>',
    ]
    program, outcome = finding.program, finding.outcome
    if program is not None:
        parts.append(
            f"<p>{len(program.steps)} step(s) on {len(program.inputs)} input(s), {program.node_count} nodes:</p>"
        )
        if len(program.steps) <= _SHOWN_STEPS:
            parts.append(f"<pre>{_escape(str(program))}</pre>")
        else:
            parts.append(f"<details><summary>the program</summary><pre>{_escape(str(program))}</pre></details>")
        if outcome is not None and outcome.failures:
            words = _first_words(program, outcome)
            if words:
                parts.append(f"<p><strong>{_escape(words)}</strong></p>")
            if program.node_count <= MAX_DRAWN_NODES:
                parts.append(_svg(program, outcome, f"arrow-{number}"))
                parts.append(
                    '<p class="meaning">e: the engine; torch: torch in float64. Orange: a check on the node '
                    "disagreed; red: the first disagreement (the first wrong value, else the last node, in "
                    "the order of the program, whose gradient disagrees).</p>"
                )
            else:
                parts.append(f"<p>(the graph is not drawn: {program.node_count} nodes)</p>")
            details = "".join(f"<li>{_escape(check.detail)}</li>" for check in outcome.failures[:10])
            more = len(outcome.failures) - 10
            parts.append(f"<ul>{details}{f'<li>... and {more} more</li>' if more > 0 else ''}</ul>")
        elif outcome is not None and outcome.engine_failure is not None:
            parts.append(f"<p>the engine: {_escape(outcome.engine_failure.describe())}</p>")
        parts.append(f"<details><summary>program (JSON)</summary><pre>{_escape(program.to_json())}</pre></details>")
    if finding.script is not None and finding.severity == "defect":
        parts.append(
            f"<details><summary>reproduce it (engine, then the reference)</summary><pre>{_escape(finding.script)}</pre>"
            "</details>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def format_html(report: VerificationReport) -> str:
    """The card as one HTML page: verdict, per-op table, each finding with its graph drawn, the summary."""
    verdict = report.verdict
    title = f"refgrad verify: {report.engine}"
    findings: Sequence[Finding] = report.findings
    unsupported = "".join(f"<li>{_escape(form)}: {_escape(reason)}</li>" for form, reason in report.unsupported.items())
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script, no fetch, no frame: the page only shows what it holds.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_escape(title)}</h1>",
        f'<p class="verdict {verdict}">{_escape(format_verdict(report))}</p>',
        "<h2>Op forms</h2>",
        _table(report),
    ]
    if unsupported:
        parts += ["<h2>Left out (the engine does not support them)</h2>", f"<ul>{unsupported}</ul>"]
    parts.append(f"<h2>Findings ({len(findings)})</h2>")
    parts += [_finding(number, finding) for number, finding in enumerate(findings, start=1)] or ["<p>none</p>"]
    parts += ["<h2>Summary</h2>", f"<pre>{_escape(format_summary(report))}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"


def html_argument(path: object) -> Path:
    """``path`` as a page to write: ``TypeError`` for a non-path, ``ValueError`` for a folder or a missing folder."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"the page's path must be a str or os.PathLike, got {type(path).__name__}")
    given = os.fspath(cast("str | os.PathLike[str]", path))
    # Absolute now: an engine in this process that changes directory does not move the page.
    target = Path(given).absolute()
    if target.is_dir():
        raise ValueError(f"--html: {given!r:.200} is a directory, not a file to write")
    if not target.parent.is_dir():
        raise ValueError(f"--html: no directory to write {given!r:.200} into")
    if not os.access(target.parent, os.W_OK):
        raise ValueError(f"--html: the directory of {given!r:.200} is not writable")
    return target


def write_html(report: VerificationReport, path: str | os.PathLike[str]) -> Path:
    """Write :func:`format_html` of ``report`` to ``path`` whole or not at all (a rename), and return the path.

    ``OSError`` if it cannot be written; an existing file at ``path`` is replaced (a symbolic link
    there by the page itself, not its target).
    """
    target = html_argument(path)
    text = format_html(report)
    # In the same folder, so that the rename is atomic: a reader sees the old page or the new one.
    # Made with the umask's permissions, as any file the user writes (tempfile's are private).
    temporary = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
