"""micrograd's demo notebook with the immutable API: an MLP learns to separate two moons.

The recipe is the notebook's: ``MLP(2, [16, 16, 1])`` on ``make_moons(100,
noise=0.1)`` with labels ``-1``/``+1``, an SVM max-margin loss
``mean(relu(1 - y * score))`` plus ``1e-4`` times the sum of squared
parameters, and full-batch gradient descent with learning rate
``1.0 - 0.9 * k / steps`` at step ``k``. Only the style differs: every step
builds a new model from the old one and its gradients (:mod:`refgrad.optim`).

``python -m refgrad train`` runs :func:`train` with a progress bar and can
draw the result with :func:`plot` (matplotlib, the ``demo`` extra).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from refgrad.datasets import Moons, make_moons
from refgrad.nn import MLP
from refgrad.optim import SGD
from refgrad.value import Value

__all__ = ["DEMO_EXTRA_HINT", "StepRecord", "TrainingRun", "plot", "svm_loss", "train"]

L2_ALPHA = 1e-4
"""The notebook's L2 regularization strength."""

DEMO_EXTRA_HINT = "pip install 'refgrad[demo]'"
"""How to get matplotlib, quoted in errors."""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """Loss and accuracy of the model a training step started from (as the notebook prints them)."""

    step: int
    """0-based step index."""
    loss: float
    """Total loss (data loss plus L2) before the step's update."""
    accuracy: float
    """Fraction of points classified correctly before the step's update, in ``[0, 1]``."""


@dataclass(frozen=True, slots=True, eq=False)
class TrainingRun:
    """The trained model, its data, the per-step history and the trained model's own loss and accuracy."""

    model: MLP
    """The model after the last update."""
    data: Moons
    """The training data (labels ``0``/``1``; training uses ``2 * label - 1``)."""
    history: tuple[StepRecord, ...]
    """One record per step."""
    final_loss: float
    """Loss of :attr:`model` on the data, after the last update."""
    final_accuracy: float
    """Accuracy of :attr:`model` on the data, after the last update."""


def svm_loss(
    model: MLP, points: Sequence[Sequence[float]], targets: Sequence[int], *, alpha: float = L2_ALPHA
) -> tuple[Value, float]:
    """The notebook's ``loss()``: max-margin loss plus L2, and the accuracy, for labels ``targets`` in ``{-1, +1}``.

    Summed in the notebook's order, so the numbers match micrograd's to rounding.
    """
    if len(points) != len(targets):
        raise ValueError(f"{len(points)} points but {len(targets)} targets")
    if not points:
        raise ValueError("svm_loss needs at least one point")
    if any(t not in (-1, 1) for t in targets):
        raise ValueError("targets must be -1 or +1 (use 2 * label - 1 for 0/1 labels)")
    scores = [model(point)[0] for point in points]
    losses = [(1 + -target * score).relu() for target, score in zip(targets, scores, strict=True)]
    data_loss = sum(losses, Value(0.0)) * (1.0 / len(losses))
    reg_loss = alpha * sum((p * p for p in model.parameters()), Value(0.0))
    correct = sum((target > 0) == (score.data > 0) for target, score in zip(targets, scores, strict=True))
    return data_loss + reg_loss, correct / len(targets)


def train(
    *,
    steps: int = 100,
    seed: int = 1337,
    samples: int = 100,
    noise: float = 0.1,
    on_step: Callable[[StepRecord], None] | None = None,
) -> TrainingRun:
    """Train ``MLP(2, [16, 16, 1])`` on ``make_moons(samples, noise, seed)`` for ``steps`` steps.

    ``seed`` makes both the data and the initial weights (``random.Random(seed)``,
    drawn as micrograd draws them), so a run is reproducible. ``on_step`` is
    called after every step with that step's record (for progress display).
    """
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    data = make_moons(samples, noise, seed)
    targets = [2 * label - 1 for label in data.labels]
    model = MLP.init(2, [16, 16, 1], rng=random.Random(seed))
    history: list[StepRecord] = []
    for k in range(steps):
        loss, accuracy = svm_loss(model, data.points, targets)
        model = SGD(1.0 - 0.9 * k / steps).step(model, loss.backward())
        record = StepRecord(k, loss.data, accuracy)
        history.append(record)
        if on_step is not None:
            on_step(record)
    final_loss, final_accuracy = svm_loss(model, data.points, targets)
    return TrainingRun(model, data, tuple(history), final_loss.data, final_accuracy)


def _score_grid(model: MLP, xs: Sequence[float], ys: Sequence[float]) -> list[list[float]]:
    return [[model.predict((x, y))[0] for x in xs] for y in ys]


def plot(run: TrainingRun, path: str | os.PathLike[str], *, resolution: int = 60) -> Path:
    """Save a PNG of ``run``: the decision boundary with the data, and the loss and accuracy per step.

    Needs matplotlib (``pip install 'refgrad[demo]'``; ``ImportError`` naming
    it otherwise). ``resolution`` is the number of grid points per axis for
    the boundary. Returns the path written.
    """
    given: object = resolution
    if isinstance(given, bool) or not isinstance(given, int):
        raise TypeError(f"resolution must be an int, got {type(given).__name__}")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    try:
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"plotting needs matplotlib: {DEMO_EXTRA_HINT}") from None

    xs_data = [p[0] for p in run.data.points]
    ys_data = [p[1] for p in run.data.points]
    margin = 0.5
    x_min, x_max = min(xs_data) - margin, max(xs_data) + margin
    y_min, y_max = min(ys_data) - margin, max(ys_data) + margin
    xs = [x_min + (x_max - x_min) * i / (resolution - 1) for i in range(resolution)]
    ys = [y_min + (y_max - y_min) * j / (resolution - 1) for j in range(resolution)]
    scores = _score_grid(run.model, xs, ys)
    predicted = [[1.0 if s > 0 else 0.0 for s in row] for row in scores]

    # A Figure without pyplot: no global figure registry, no GUI backend.
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    boundary, curve = figure.subplots(1, 2, width_ratios=(1.1, 1))
    colors = ("#d95f02", "#1b9e77")
    boundary.contourf(xs, ys, predicted, levels=[-0.5, 0.5, 1.5], cmap=ListedColormap(colors), alpha=0.25)
    boundary.contour(xs, ys, scores, levels=[0.0], colors="black", linewidths=1.0)
    for label, color in enumerate(colors):
        members = [p for p, lab in zip(run.data.points, run.data.labels, strict=True) if lab == label]
        boundary.scatter(
            [p[0] for p in members],
            [p[1] for p in members],
            s=22,
            color=color,
            edgecolors="black",
            linewidths=0.4,
            label=f"label {2 * label - 1:+d}",
        )
    boundary.set_xlim(x_min, x_max)
    boundary.set_ylim(y_min, y_max)
    boundary.set_aspect("equal")
    boundary.set_title(f"decision boundary: accuracy {run.final_accuracy:.0%}")
    boundary.legend(loc="upper right", fontsize=8)

    steps = [record.step for record in run.history]
    curve.plot(steps, [record.loss for record in run.history], color="#7570b3", label="loss")
    curve.set_yscale("log")
    curve.set_xlabel("step")
    curve.set_ylabel("loss (log scale)")
    curve.set_title(f"training: final loss {run.final_loss:.4f}")
    accuracy_axis = curve.twinx()
    accuracy_axis.plot(
        steps, [100 * record.accuracy for record in run.history], color="#e7298a", linestyle="--", label="accuracy"
    )
    accuracy_axis.set_ylabel("accuracy (%)")
    accuracy_axis.set_ylim(0, 105)
    handles = curve.get_legend_handles_labels()
    more = accuracy_axis.get_legend_handles_labels()
    curve.legend(handles[0] + more[0], handles[1] + more[1], loc="center right", fontsize=8)

    destination = Path(path)
    # matplotlib's own stubs leave savefig's **kwargs untyped.
    figure.savefig(destination, format="png", dpi=110)  # pyright: ignore[reportUnknownMemberType]
    return destination


class ProgressBar:
    """A one-line progress bar on a text stream, redrawn with carriage returns.

    When the stream is not a terminal (a log file, a pipe) it prints a plain
    line every tenth of the way instead, so logs stay readable.
    """

    def __init__(self, total: int, stream: TextIO | None = None, *, width: int = 30) -> None:
        """A bar for ``total`` steps on ``stream`` (standard error by default)."""
        self._total = total
        self._stream = sys.stderr if stream is None else stream
        self._width = width
        isatty = getattr(self._stream, "isatty", None)
        self._interactive = bool(callable(isatty) and isatty())
        self._every = max(1, total // 10)
        self._drawn = 0

    def update(self, record: StepRecord) -> None:
        """Show that step ``record.step`` is done, with its loss and accuracy."""
        done = record.step + 1
        text = f"step {done}/{self._total}  loss {record.loss:.4f}  accuracy {record.accuracy:.0%}"
        if self._interactive:
            filled = self._width * done // self._total
            bar = "#" * filled + "-" * (self._width - filled)
            line = f"[{bar}] {text}"
            # Pad over the previous line's tail: a shorter line would leave stale characters behind.
            self._stream.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
            self._stream.flush()
        elif done % self._every == 0 or done == self._total:
            self._stream.write(text + "\n")
            self._stream.flush()

    def close(self) -> None:
        """End the bar's line (on a terminal)."""
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()
