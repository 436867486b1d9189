"""Every Python example in README.md and docs/ runs, and prints what the page says it prints.

A page's ```python blocks run in order in one namespace (like a notebook). A ```text block
that directly follows a ```python block is that block's expected standard output, compared
exactly. Other fences (bash, dot, ...) are for reading only.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from _coverage_repeats import coverage_paused

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# Pages run with coverage paused: docs/nn.md trains micrograd's demo MLP for 100 steps twice, repeating
# lines and branches that shorter tests measure (tests/_coverage_repeats.py).
COVERAGE_REPEATS = {ROOT / "docs" / "nn.md"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One executable block of a page and the output the page shows for it (if any)."""

    line: int
    source: str
    expected_output: str | None


def examples(page: Path) -> list[Example]:
    """The page's python blocks, each paired with the text block right after it."""
    text = page.read_text(encoding="utf-8")
    fences = list(FENCE.finditer(text))
    found: list[Example] = []
    for index, fence in enumerate(fences):
        if fence.group("info").strip() != "python":
            continue
        expected = None
        if index + 1 < len(fences):
            following = fences[index + 1]
            between = text[fence.end() : following.start()]
            if following.group("info").strip() == "text" and not between.strip():
                expected = following.group("body")
        found.append(Example(text.count("\n", 0, fence.start()) + 1, fence.group("body"), expected))
    return found


def test_the_pages_have_examples() -> None:
    """The collector finds the README's examples (so an empty run cannot pass silently)."""
    assert len(examples(ROOT / "README.md")) >= 2
    assert any(example.expected_output for example in examples(ROOT / "README.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_page_examples_run_and_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    """Each python block runs without error; where the page shows output, it is exactly that."""
    namespace: dict[str, object] = {"__name__": f"docs_example_{page.stem}"}
    previous = Path.cwd()
    os.chdir(tmp_path)  # examples that write files write them here
    unmeasured = coverage_paused() if page in COVERAGE_REPEATS else contextlib.nullcontext()
    try:
        with unmeasured:
            for example in examples(page):
                captured = io.StringIO()
                with contextlib.redirect_stdout(captured):
                    code = compile(example.source, f"{page.name}:{example.line}", "exec")
                    exec(code, namespace)
                if example.expected_output is not None:
                    assert captured.getvalue() == example.expected_output, f"{page.name}, block at line {example.line}"
    finally:
        os.chdir(previous)
