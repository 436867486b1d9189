"""``python -m refgrad demo`` and ``ops``, run as a user would (a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from refgrad import registry


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refgrad", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_prints_the_three_numbers() -> None:
    """The seed example's value and gradients, to four decimals."""
    result = _run("demo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["g = 24.7041", "dg/da = 138.8338", "dg/db = 645.5773"]


def test_ops_lists_every_registry_op() -> None:
    """One row per op, each with its forward formula, torch counterpart and domain."""
    result = _run("ops")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(registry.names)
    for spec, row in zip(registry, rows, strict=True):
        assert spec.formula in row
        assert spec.domain.description in row
        assert spec.torch is not None
        assert f" {spec.torch} " in row


def test_usage_errors_exit_2_with_one_line() -> None:
    """An unknown command is one line on stderr and exit status 2, no traceback."""
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
