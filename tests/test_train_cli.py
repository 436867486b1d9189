"""``python -m refgrad train`` and ``demo --graph``: progress, the final line, the pictures, the errors."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _coverage_repeats import child_environment

from refgrad.cli import main
from refgrad.moons import ProgressBar, StepRecord

FINAL_LINE = re.compile(r"^final loss (\d+\.\d+), accuracy (\d+\.\d)% after (\d+) steps$")


def _run(*args: str, cwd: Path | None = None, measured: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m refgrad ARGS`` in a child process; ``measured=False``: a repeat, run without coverage."""
    return subprocess.run(
        [sys.executable, "-m", "refgrad", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
        env=None if measured else child_environment(),
    )


@pytest.mark.slow
def test_train_reaches_full_accuracy_and_plots(tmp_path: Path) -> None:
    """The demo command trains to 100% accuracy, reports it on its last line and writes a PNG plot."""
    plot = tmp_path / "moons.png"
    # Its 100 steps repeat what the 3-step runs below measure (tests/_coverage_repeats.py).
    result = _run("train", "--plot", str(plot), measured=False)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    match = FINAL_LINE.match(last)
    assert match is not None, last
    assert match.group(2) == "100.0"
    assert match.group(3) == "100"
    assert 0.0 < float(match.group(1)) < 0.1
    # Not a terminal here: progress comes as plain lines, each with loss and accuracy, ending at the last step.
    progress = result.stderr.splitlines()
    assert "\r" not in result.stderr
    assert progress[-1].startswith("step 100/100")
    assert all(re.fullmatch(r"step \d+/100  loss \d+\.\d{4}  accuracy \d+%", line) for line in progress)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    from matplotlib.image import imread

    image = imread(str(plot))
    height, width = image.shape[:2]
    assert width > 800
    assert height > 400


def test_train_steps_and_seed_are_honoured() -> None:
    """--steps sets the number of steps in the report; the run is reproducible for a given --seed."""
    first = _run("train", "--steps", "3", "--seed", "5")
    second = _run("train", "--steps", "3", "--seed", "5")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    match = FINAL_LINE.match(first.stdout.splitlines()[-1])
    assert match is not None
    assert match.group(3) == "3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--steps", "0"], "must be at least 1"),
        (["train", "--steps", "many"], "expected a whole number"),
        (["train", "--seed", "x"], "invalid int value"),
        (["train", "--plot", "/no/such/directory/moons.png"], "no directory to write"),
        (["demo", "--graph", "graph"], "cannot tell the picture format"),
        (["demo", "--graph", "graph.nosuchformat"], "unknown Graphviz output format"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad arguments: exit status 2, one line on standard error saying what was wrong, no traceback."""
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("refgrad: error:")
    assert message in result.stderr


# Slow: the plot evaluates the model on a grid of points, and under typeguard (the fast tests' pass)
# that took minutes; like the 100-step `train --plot` it runs in `nox -s tests` only.
@pytest.mark.slow
def test_a_short_run_plots_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """train --steps 3 --plot: the plot is written and said so before the final line (measured in-process)."""
    plot = tmp_path / "short.png"
    status = main(["train", "--steps", "3", "--seed", "5", "--plot", str(plot)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[-2] == f"plot written to {plot}"
    match = FINAL_LINE.match(lines[-1])
    assert match is not None, lines[-1]
    assert match.group(3) == "3"
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--plot with matplotlib missing: exit 2 before training, one line naming the demo extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status = main(["train", "--plot", str(tmp_path / "moons.png")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == "refgrad: error: --plot needs matplotlib: pip install 'refgrad[demo]'\n"
    assert captured.out == ""
    assert not (tmp_path / "moons.png").exists()


def test_demo_graph_draws_the_seed_example(tmp_path: Path) -> None:
    """demo --graph PATH prints the three numbers and writes the seed example's graph with its gradients."""
    picture = tmp_path / "seed.svg"
    result = _run("demo", "--graph", str(picture))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == ["g = 24.7041", "dg/da = 138.8338", "dg/db = 645.5773"]
    texts = [element.text for element in ET.parse(picture).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "grad 138.8338" in texts
    assert "grad 645.5773" in texts


def test_demo_graph_without_graphviz_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """demo --graph with the graphviz package missing: exit 2, one line naming the viz extra."""
    monkeypatch.setitem(sys.modules, "graphviz", None)
    status = main(["demo", "--graph", str(tmp_path / "seed.svg")])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "pip install 'refgrad[viz]'" in err


def test_demo_graph_dot_text_needs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --graph graph.dot writes DOT text even without the graphviz package."""
    monkeypatch.setitem(sys.modules, "graphviz", None)
    assert main(["demo", "--graph", str(tmp_path / "seed.dot")]) == 0
    assert (tmp_path / "seed.dot").read_text(encoding="utf-8").startswith("digraph refgrad {")
    assert "graph written to" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    """On a terminal the bar is redrawn in place with carriage returns and finished with one newline."""
    stream = _Terminal()
    bar = ProgressBar(4, stream, width=8)
    for step, loss in enumerate([1.0, 0.5, 0.25, 0.125]):
        bar.update(StepRecord(step, loss, 0.5 + step / 8))
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4
    assert text.count("\n") == 1
    assert text.endswith("[########] step 4/4  loss 0.1250  accuracy 88%\n")


def test_progress_bar_prints_tenths_elsewhere() -> None:
    """Off a terminal: a plain line every tenth of the run and at the end, no carriage returns."""
    stream = io.StringIO()
    bar = ProgressBar(25, stream)
    for step in range(25):
        bar.update(StepRecord(step, 1.0, 1.0))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[1] for line in lines] == [
        "2/25",
        "4/25",
        "6/25",
        "8/25",
        "10/25",
        "12/25",
        "14/25",
        "16/25",
        "18/25",
        "20/25",
        "22/25",
        "24/25",
        "25/25",
    ]
