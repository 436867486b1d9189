"""Tables rendered twice (fixed-width text for the terminal, Markdown for docs/performance.md) and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Table", "render_markdown", "render_text", "write_plot", "write_training_plot"]


@dataclass(frozen=True)
class Table:
    """A titled table; the first column is a label, the rest are figures (right-aligned)."""

    title: str
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    notes: list[str] = field(default_factory=list[str])


def render_text(table: Table) -> str:
    """Fixed-width text with a title line and notes underneath."""
    widths = [len(h) for h in table.header]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(widths[i + 1]) for i, cell in enumerate(cells[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [table.title, line(table.header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in table.rows]
    out += [f"  {note}" for note in table.notes]
    return "\n".join(out)


def render_markdown(table: Table, heading_level: int = 3) -> str:
    """A Markdown heading, a pipe table and the notes as a list."""

    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = [f"{'#' * heading_level} {table.title}", ""]
    out.append("| " + " | ".join(escape(h) for h in table.header) + " |")
    out.append("|" + "|".join([":---", *(["---:"] * (len(table.header) - 1))]) + "|")
    out += ["| " + " | ".join(escape(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {note}" for note in table.notes]
    return "\n".join(out)


ENGINE_STYLE: dict[str, tuple[str, str]] = {
    "refgrad": ("refgrad", "tab:blue"),
    "compat": ("refgrad.micrograd", "tab:green"),
    "micrograd": ("micrograd 0.1.0", "tab:red"),
    "torch": ("torch scalar autograd", "tab:orange"),
    "refgrad/gc-off": ("refgrad, gc off", "tab:purple"),
}
SHAPE_STYLE: dict[str, tuple[str, str]] = {"chain": ("chain", "-"), "wide": ("wide sum", "--")}
PHASE_TITLE: dict[str, str] = {
    "build": "build",
    "backward": "backward",
    "create_graph": "backward, create_graph=True",
    "jvp": "jvp (forward mode)",
}

# (engine, shape, phase) -> [(size, microseconds per node)]
Series = dict[tuple[str, str, str], list[tuple[int, float]]]


def write_plot(series: Series, path: Path, subtitle: str) -> None:
    """Log-log time per node against graph size: one panel per phase, one line per engine and shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    phases = list(PHASE_TITLE)
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for axis, phase in zip(axes.flat, phases, strict=True):
        drawn = False
        for (engine, shape, line_phase), points in sorted(series.items()):
            if line_phase != phase or not points:
                continue
            label, colour = ENGINE_STYLE[engine]
            shape_label, dash = SHAPE_STYLE[shape]
            sizes = [size for size, _ in points]
            micros = [value for _, value in points]
            axis.plot(sizes, micros, dash, marker="o", color=colour, label=f"{label}, {shape_label}")
            drawn = True
        axis.set_xscale("log")
        axis.set_yscale("log")
        # Plain numbers: a panel spanning less than a decade would otherwise show 2 x 10^0 labels.
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        axis.set_title(PHASE_TITLE[phase])
        axis.grid(True, which="both", alpha=0.3)
        axis.set_ylabel("microseconds per node")
        if drawn:
            axis.legend(fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel("graph size (op nodes)")
    figure.suptitle(f"Time per node against graph size (lower is better; flat is linear)\n{subtitle}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_training_plot(
    phase_ms: dict[str, dict[str, float]], step_ms: dict[str, float], path: Path, subtitle: str
) -> None:
    """Stacked bars of the training step's phases (medians), one bar per engine, labelled with the step's median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    names = list(phase_ms)
    phases = ["forward", "backward", "update", "release"]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:gray"]
    left = [0.0] * len(names)
    for phase, colour in zip(phases, colours, strict=True):
        widths = [phase_ms[name][phase] for name in names]
        axis.barh(names, widths, left=left, color=colour, label=phase)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for index, name in enumerate(names):
        axis.text(left[index] * 1.02 + 5, index, f"step {step_ms[name]:.0f} ms", va="center", fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("milliseconds per training step (medians of each phase)")
    axis.set_title(f"micrograd demo training step\n{subtitle}", fontsize=10)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_xlim(0, max(left) * 1.25)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
