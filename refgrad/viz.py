"""Pictures of expression graphs: Graphviz DOT text, and rendering through Graphviz.

:func:`to_dot` draws a graph the way micrograd's trace notebook does: one
record per node showing its label, its data and its gradient, and one small
node per op (showing the op's registry ``symbol``) between the op's inputs and
its result. It works for :class:`refgrad.Value` (gradients from a
:class:`refgrad.Gradients` mapping) and for the micrograd surface's
:class:`refgrad.micrograd.engine.Value` (gradients from ``.grad``). The walk is
an explicit queue, never recursion, and large graphs are cut at ``max_nodes``
nodes nearest the output, the rest collapsed into a single placeholder.

:func:`render` turns the DOT text into SVG, PNG, PDF, ... with the ``graphviz``
package (``pip install 'refgrad[viz]'``) and Graphviz's ``dot`` program;
:func:`save` picks the format from the file name (and writes ``.dot`` text
with no dependency at all).
"""

from __future__ import annotations

import os
import unicodedata
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, TypeAlias, cast

from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.numeric import as_count, as_finite_float, shown, type_name
from refgrad.value import Value

__all__ = ["DEFAULT_MAX_NODES", "render", "save", "to_dot"]

DEFAULT_MAX_NODES: Final = 500
"""Nodes drawn at most by default; Graphviz's layout gets slow and the picture unreadable beyond."""

_Node: TypeAlias = Value | MicrogradValue

# Characters with a meaning in a record label (fields, ports, nesting) or in a quoted DOT string.
_RECORD_SPECIAL: Final = frozenset('{}|<>"')


def _escape(text: str, *, record: bool) -> str:
    """``text`` as the inside of a quoted DOT label, shown literally.

    Backslashes and quotes are escaped everywhere; in a record label the field
    syntax characters ``{ } | < >`` are escaped too. Line breaks become DOT's
    ``\\n`` (a centred line break), tabs spaces; other control characters are
    shown as their code (``\\x1b``) instead of reaching Graphviz raw.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    pieces: list[str] = []
    for char in text:
        if char == "\\":
            pieces.append("\\\\")
        elif char == "\n":
            pieces.append("\\n")
        elif char == '"' or (record and char in _RECORD_SPECIAL):
            pieces.append("\\" + char)
        elif unicodedata.category(char) == "Cc":
            pieces.append(f"\\\\x{ord(char):02x}")
        else:
            pieces.append(char)
    return "".join(pieces)


def _number(x: float) -> str:
    # micrograd's pictures print 4 decimals; very large or tiny values would lose everything that way.
    magnitude = abs(x)
    if x == 0.0 or 1e-4 <= magnitude < 1e7:
        return f"{x:.4f}"
    return f"{x:.4e}"


def _op_text(node: _Node) -> str:
    op = node.op
    assert op is not None  # only called for nodes made by an op
    # The static parameters complete the symbol: x ** 3 shows as "**3", as in micrograd.
    return op.symbol + "".join(f"{p:g}" for p in node.params)


def _check_max_nodes(max_nodes: object) -> int | None:
    if max_nodes is None:
        return None
    return as_count(max_nodes, "max_nodes")


def _collect(output: _Node, max_nodes: int | None) -> tuple[set[_Node], int]:
    """The nodes to draw (the ones nearest the output) and how many more there are."""
    drawn: set[_Node] = {output}
    hidden: set[_Node] = set()
    queue: deque[_Node] = deque([output])
    while queue:
        node = queue.popleft()
        for inp in node.inputs:
            if inp in drawn or inp in hidden:
                continue
            if max_nodes is None or len(drawn) < max_nodes:
                drawn.add(inp)
            else:
                hidden.add(inp)
            queue.append(inp)
    return drawn, len(hidden)


def to_dot(
    output: Value | MicrogradValue,
    gradients: Mapping[Value, float] | Mapping[MicrogradValue, float] | None = None,
    *,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    rankdir: Literal["LR", "TB"] = "LR",
) -> str:
    """Graphviz DOT text for the graph that computes ``output``.

    Each node is a record ``label | data | grad``; each op result gets a small
    node with the op's symbol, fed by the op's inputs (``x * x`` has two edges).
    Gradients come from ``gradients`` when given (normally
    ``output.backward()``; nodes missing from it show ``0``); otherwise a
    :class:`refgrad.micrograd.engine.Value` shows its ``.grad`` and a
    :class:`refgrad.Value` shows no gradient field.

    At most ``max_nodes`` nodes are drawn (``None``: all), those nearest the
    output; the rest are collapsed into one dashed placeholder saying how many
    were left out, with an edge into every op that reads one of them.
    ``rankdir`` is ``"LR"`` (left to right, as micrograd) or ``"TB"``.
    """
    if not isinstance(output, Value | MicrogradValue):
        raise TypeError(f"output must be a refgrad.Value or a refgrad.micrograd.engine.Value, got {type_name(output)}")
    if gradients is not None and not isinstance(gradients, Mapping):
        raise TypeError(f"gradients must be a mapping from nodes to floats or None, got {type_name(gradients)}")
    limit = _check_max_nodes(max_nodes)
    # isinstance first: `in` would call a hostile object's __eq__.
    direction: object = rankdir  # anything can arrive from untyped callers
    if not isinstance(direction, str) or direction not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', got {shown(direction)}")

    drawn, hidden_count = _collect(output, limit)
    # Numbered in creation order, which is topological: inputs come before the nodes they feed.
    ordered = sorted(drawn, key=lambda n: n._position)
    ids = {node: f"n{number}" for number, node in enumerate(ordered)}
    show_grad = gradients is not None or isinstance(output, MicrogradValue)
    # Keys and values are checked as nodes are drawn (a node missing from it shows 0), so the mapping
    # may hold anything until then.
    lookup = cast("Mapping[object, object] | None", gradients)
    lines = [
        "digraph refgrad {",
        f"  graph [rankdir={rankdir}];",
        '  node [fontname="Helvetica", fontsize=11];',
    ]
    edges: list[str] = []
    for node in ordered:
        ident = ids[node]
        fields = [_escape(node.label or "", record=True), f"data {_number(node.data)}"]
        if show_grad:
            if lookup is not None:
                gradient = as_finite_float(lookup.get(node, 0.0), f"the gradient of node {ident}")
            else:
                assert isinstance(node, MicrogradValue)  # show_grad without a mapping means micrograd nodes
                gradient = node.grad
            fields.append(f"grad {_number(gradient)}")
        lines.append(f'  {ident} [shape=record, label="{{ {" | ".join(fields)} }}"];')
        if node.op is None:
            continue
        op_ident = f"{ident}op"
        lines.append(f'  {op_ident} [label="{_escape(_op_text(node), record=False)}"];')
        edges.append(f"  {op_ident} -> {ident};")
        for inp in node.inputs:
            source = ids.get(inp, "hidden")
            edges.append(f"  {source} -> {op_ident};")
    if hidden_count:
        noun = "node" if hidden_count == 1 else "nodes"
        lines.append(f'  hidden [shape=box, style=dashed, label="... {hidden_count} more {noun} not shown"];')
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


_FORMATS_HINT: Final = "svg, png, pdf, ..."


def render(
    output: Value | MicrogradValue,
    path: str | os.PathLike[str],
    gradients: Mapping[Value, float] | Mapping[MicrogradValue, float] | None = None,
    format: str = "svg",
    *,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    rankdir: Literal["LR", "TB"] = "LR",
) -> Path:
    """Draw the graph of ``output`` (see :func:`to_dot`) into the file ``path``; returns the path.

    ``format`` is any output format Graphviz knows (``"svg"``, ``"png"``,
    ``"pdf"``, ...). Needs the ``graphviz`` package (``pip install
    'refgrad[viz]'``) and Graphviz's ``dot`` program; ``ImportError`` or
    ``RuntimeError`` saying which is missing otherwise.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, got {type_name(path)}")
    if not isinstance(format, str):
        raise TypeError(f"format must be a str such as 'svg' or 'png', got {type_name(format)}")
    text = to_dot(output, gradients, max_nodes=max_nodes, rankdir=rankdir)
    try:
        import graphviz
    except ImportError:
        raise ImportError(
            "refgrad.viz.render needs the graphviz package: pip install 'refgrad[viz]' (to_dot works without it)"
        ) from None
    known: frozenset[str] = frozenset(graphviz.FORMATS)
    if format not in known:
        raise ValueError(f"unknown Graphviz output format {format!r}; try one of {_FORMATS_HINT}")
    try:
        picture: bytes = graphviz.pipe("dot", format, text.encode("utf-8"))
    except graphviz.ExecutableNotFound:
        raise RuntimeError(
            "Graphviz's dot program was not found on PATH; install Graphviz "
            "(for example apt-get install graphviz, or brew install graphviz)"
        ) from None
    destination = Path(path)
    destination.write_bytes(picture)
    return destination


_DOT_SUFFIXES: Final = frozenset({".dot", ".gv"})


def save(
    output: Value | MicrogradValue,
    path: str | os.PathLike[str],
    gradients: Mapping[Value, float] | Mapping[MicrogradValue, float] | None = None,
    *,
    max_nodes: int | None = DEFAULT_MAX_NODES,
) -> Path:
    """Draw the graph of ``output`` into ``path``, in the format its suffix names; returns the path.

    ``graph.dot`` or ``graph.gv`` gets the DOT text of :func:`to_dot` (no
    dependency needed); ``graph.svg``, ``graph.png``, ``graph.pdf`` and other
    Graphviz formats are rendered by :func:`render`. ``ValueError`` for a path
    without a suffix.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, got {type_name(path)}")
    destination = Path(path)
    suffix = destination.suffix.lower()
    if not suffix:
        raise ValueError(f"cannot tell the picture format of {str(destination)!r}: use a suffix such as .svg or .png")
    if suffix in _DOT_SUFFIXES:
        destination.write_text(to_dot(output, gradients, max_nodes=max_nodes), encoding="utf-8")
        return destination
    return render(output, destination, gradients, suffix[1:], max_nodes=max_nodes)
