"""Sphinx extension: the op reference table, generated from ``refgrad.ops.registry`` at build time.

``{refgrad-ops}`` in a page becomes one table row per registry entry, so a new op
appears in the docs without anyone editing them.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from refgrad.cli import op_table


class OpReference(SphinxDirective):
    """The registry as a table: name, arity, params, forward, partials, domain, kinks, torch counterpart."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        rows = op_table()
        header, body = rows[0], rows[1:]
        table = nodes.table(classes=["refgrad-ops"])
        group = nodes.tgroup(cols=len(header))
        table += group
        for _ in header:
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        group += head
        head += self._row(header)
        tbody = nodes.tbody()
        group += tbody
        for row in body:
            tbody += self._row(row, code_columns={0, 3, 4, 5})
        return [table]

    @staticmethod
    def _row(cells: tuple[str, ...], code_columns: frozenset[int] | set[int] = frozenset()) -> nodes.row:
        row = nodes.row()
        for index, text in enumerate(cells):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += nodes.literal(text=text) if index in code_columns else nodes.Text(text)
            entry += paragraph
            row += entry
        return row


def setup(app: Sphinx) -> dict[str, object]:
    """Register the ``refgrad-ops`` directive."""
    app.add_directive("refgrad-ops", OpReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
