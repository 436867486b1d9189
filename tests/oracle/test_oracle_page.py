"""``verify --html PATH``: the card as one page, each counterexample drawn, engine text escaped, written whole."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _corpus import BreadthFirst, ManyBugs
from _toy_engine import ToyValue

from refgrad.cli import main
from refgrad.oracle import Check, MicrogradStyleEngine, Outcome, Program, Ref, Step, format_html, verify, write_html
from refgrad.oracle.command import run_verify
from refgrad.oracle.findings import COMPOSITION, Finding
from refgrad.oracle.page import MAX_DRAWN_NODES, first_disagreement

_FIRST: str = "#d93025"  # the stroke of the first disagreement's box


class _Page(HTMLParser):
    """The tags of a page, the text inside each <strong>, and each <svg>'s rectangles' strokes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self.strong: list[str] = []
        self.svg_strokes: list[list[str | None]] = []
        self._in_strong = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "meta":
            self.meta.append(dict(attrs))
        elif tag == "strong":
            self._in_strong = True
            self.strong.append("")
        elif tag == "svg":
            self.svg_strokes.append([])
        elif tag == "rect":
            self.svg_strokes[-1].append(dict(attrs).get("stroke"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "strong":
            self._in_strong = False

    def handle_data(self, data: str) -> None:
        if self._in_strong:
            self.strong[-1] += data


def test_the_page_shows_every_defect_with_its_graph_and_where_the_disagreement_starts(tmp_path: Path) -> None:
    """ManyBugs' three defects on one page: the verdict, a section each, the two counterexamples drawn and explained."""
    page_path = tmp_path / "card.html"
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        "_corpus:ManyBugs",
        examples=40,
        seed=0,
        ops=None,
        out=out,
        err=err,
        database=None,
        isolate=False,
        html=page_path,
    )
    assert status == 1
    assert f"the card as a page: {page_path}" in err.getvalue()
    text = page_path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    assert "FAIL: _corpus:ManyBugs: 3 defects" in text
    page = _Page(text)
    # Self-contained and inert: no script, no fetch of anything.
    assert not {"script", "img", "link", "iframe", "object", "embed"} & set(page.tags)
    policies = [m["content"] for m in page.meta if m.get("http-equiv") == "Content-Security-Policy"]
    assert policies == ["default-src 'none'; style-src 'unsafe-inline'"]
    assert text.count('<section class="finding defect"') == 3
    # relu returns nothing (no numbers to draw); tanh and c - x are drawn, one box marked first each.
    assert len(page.svg_strokes) == 2
    assert all(strokes.count(_FIRST) == 1 for strokes in page.svg_strokes)
    number = r"-?[0-9.e+-]+"
    said = "\n".join(page.strong)
    assert re.search(rf"d output / d x0 \(engine {number}, torch {number}\), passed on by n1 = x0\.tanh\(\)", said)
    assert re.search(rf"n1's value \(engine {number}, torch {number}\), computed by n1 = {number} - x0", said), said
    assert "1 - tanh(x)**2" in text  # the expected rule, from the finding's summary
    assert "reproduce it (engine, then the reference)" in text


class _Marked(ToyValue):
    """An engine whose exp fails with markup in its message."""

    def exp(self) -> ToyValue:
        raise RuntimeError("<script>alert('owned')</script> & <img src=x onerror=alert(1)>")


def test_what_the_engine_wrote_is_escaped_on_the_page() -> None:
    """A message with tags reaches the page as text: no tag of the engine's, every character shown."""
    report = verify(MicrogradStyleEngine(_Marked, name="<b>marked</b>"), examples=5, seed_value=0, ops=("exp", "add"))
    text = format_html(report)
    assert any("alert('owned')" in finding.summary for finding in report.findings)
    page = _Page(text)
    assert "script" not in page.tags
    assert "img" not in page.tags
    assert "b" not in page.tags
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in text
    assert "<title>refgrad verify: &lt;b&gt;marked&lt;/b&gt;</title>" in text


def test_a_page_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing page is replaced by a rename: a failed write leaves the old one and no temporary file."""
    report = verify(MicrogradStyleEngine(ManyBugs), examples=5, seed_value=0, ops=("add",))
    target = tmp_path / "card.html"
    target.write_text("the old page", encoding="utf-8")

    def refuse(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("refgrad.oracle.page.os.replace", refuse)
        with pytest.raises(OSError, match="No space left"):
            write_html(report, target)
    assert target.read_text(encoding="utf-8") == "the old page"
    assert [p.name for p in tmp_path.iterdir()] == ["card.html"]
    assert write_html(report, target) == target
    assert target.read_text(encoding="utf-8") == format_html(report)
    assert [p.name for p in tmp_path.iterdir()] == ["card.html"]
    with pytest.raises(ValueError, match="is a directory"):
        write_html(report, tmp_path)
    with pytest.raises(ValueError, match="no directory to write"):
        write_html(report, tmp_path / "missing" / "card.html")
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        write_html(report, 3)  # type: ignore[arg-type]  # the wrong type on purpose


def test_html_options_that_cannot_be_honoured_are_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing folder, or --html with --program or --replay: exit 2 and one line, nothing run or written."""
    missing = str(tmp_path / "missing" / "card.html")
    out, err = io.StringIO(), io.StringIO()
    status = run_verify("refgrad", examples=5, seed=0, ops=None, out=out, err=err, database=None, html=missing)
    assert (status, out.getvalue()) == (2, "")
    assert err.getvalue() == f"refgrad: error: --html: no directory to write {missing!r} into\n"
    program = tmp_path / "program.json"
    program.write_text(Program((0.5,), (Step("exp", (Ref(0),)),)).to_json(), encoding="utf-8")
    assert main(["verify", "--program", str(program), "--html", str(tmp_path / "card.html")]) == 2
    said = capsys.readouterr().err
    assert said == "refgrad: error: --program checks one file, no random graphs: drop --html\n"
    assert [p.name for p in tmp_path.iterdir()] == ["program.json"]


def _check(kind: str, node: int, *, passed: bool) -> Check:
    return Check(kind, node, frozenset({"mul"}), 0.5 if passed else math.inf, "", 1.0, 2.0)  # type: ignore[arg-type]


def test_the_first_disagreement_is_the_first_wrong_value_else_the_last_wrong_gradient() -> None:
    """Values go forward (the first wrong one spoils the rest), gradients backward (the last wrong one is first)."""
    program = Program((0.5, 2.0), (Step("mul", (Ref(0), Ref(1))), Step("mul", (Ref(2), Ref(0)))))

    def outcome(*checks: Check) -> Outcome:
        return Outcome(program, checks, ())

    wrong_values = outcome(_check("value", 3, passed=False), _check("value", 2, passed=False))
    assert first_disagreement(wrong_values) == 2
    wrong_gradients = outcome(
        _check("gradient", 0, passed=False), _check("gradient", 2, passed=False), _check("gradient", 3, passed=True)
    )
    assert first_disagreement(wrong_gradients) == 2
    both = outcome(_check("gradient", 2, passed=False), _check("value", 3, passed=False))
    assert first_disagreement(both) == 3
    # Forward mode names the output, second order an input: neither is where it went wrong.
    whole = outcome(_check("forward-mode", 3, passed=False), _check("second-order", 0, passed=False))
    assert first_disagreement(whole) is None
    assert first_disagreement(outcome(_check("forward-mode", 3, passed=False), _check("domain", 2, passed=False))) == 2
    assert first_disagreement(outcome(_check("value", 3, passed=True))) is None


def test_a_composition_defect_is_drawn_with_every_edge_and_the_rule_that_passed_the_gradient_on() -> None:
    """A breadth-first backward: the graph has edges past a column (drawn above the boxes), one arrow per operand."""
    report = verify(MicrogradStyleEngine(BreadthFirst), examples=20, seed_value=0)
    (finding,) = report.defects
    assert finding.kind is COMPOSITION
    assert finding.program is not None
    text = format_html(report)
    edges = sum(len({o.node for o in step.operands if isinstance(o, Ref)}) for step in finding.program.steps)
    assert text.count('marker-end="url(#arrow-1)"') == edges
    # An edge past a column runs along the gap above the boxes: a path of straight segments.
    assert re.search(r'<path d="M[0-9]+,[0-9]+ L[0-9]+,[0-9]+ L', text)
    said = "\n".join(_Page(text).strong)
    assert re.search(r"First disagreement: d output / d x[0-9]+ \(engine .+, torch .+\), passed on by n[0-9]+ = ", said)
    # Without the findings: an empty list said so; a counterexample too large to draw keeps its text.
    assert "<p>none</p>" in format_html(dataclasses.replace(report, findings=()))
    wide = Program((0.5,), tuple(Step("exp", (Ref(i),)) if i % 2 else Step("neg", (Ref(i),)) for i in range(70)))
    outcome = Outcome(wide, (_check("value", 70, passed=False),), ())
    big = Finding(COMPOSITION, None, None, "a large one", wide, None, outcome)
    page = format_html(dataclasses.replace(report, findings=(big,)))
    assert wide.node_count > MAX_DRAWN_NODES
    assert f"(the graph is not drawn: {wide.node_count} nodes)" in page
    assert "<svg" not in page
    assert "First disagreement: n70&#x27;s value (engine 1.0, torch 2.0), computed by n70 = " in page
    # A domain disagreement at a node is said with the check's words; one at no node says nothing it cannot know.
    one = Program((0.5,), (Step("exp", (Ref(0),)),))
    rejected = Check("domain", 1, frozenset({"exp"}), math.inf, "the engine rejected node 1")
    anywhere = Check("domain", None, frozenset({"exp"}), math.inf, "OverflowError in backward")
    findings = tuple(
        Finding(COMPOSITION, None, None, "domain", one, None, Outcome(one, (check,), ()))
        for check in (rejected, anywhere)
    )
    page = format_html(dataclasses.replace(report, findings=findings))
    assert _Page(page).strong == ["First disagreement: at n1: the engine rejected node 1."]
    assert "OverflowError in backward" in page
    # A forward-mode disagreement names the output but is not about it: no box is coloured.
    jvp = Check("forward-mode", 1, frozenset({"exp"}), math.inf, "jvp along [1.0]", 1.0, 2.0)
    forward = Finding(COMPOSITION, None, None, "jvp", one, None, Outcome(one, (jvp,), ()))
    strokes = _Page(format_html(dataclasses.replace(report, findings=(forward,)))).svg_strokes
    assert strokes == [["#555", "#555"]]
    # A disagreement six digits do not show (an accuracy warning) shows every digit on both sides.
    close = Check("value", 1, frozenset({"exp"}), 3.0, "", 1.6487212707001282, 1.6487212707001280)
    near = Finding(COMPOSITION, None, None, "close", one, None, Outcome(one, (close,), ()))
    page = format_html(dataclasses.replace(report, findings=(near,)))
    assert "value e 1.6487212707001282 | torch 1.648721270700128" in page


def test_a_page_that_cannot_be_written_is_exit_2_after_the_card(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The run's card is printed; the page's failure is one line and exit 2 (no verdict on a half-done job)."""

    def full(report: object, path: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("refgrad.oracle.command.write_html", full)
    out, err = io.StringIO(), io.StringIO()
    status = run_verify(
        "refgrad", examples=3, seed=0, ops="add", out=out, err=err, database=None, html=tmp_path / "card.html"
    )
    assert status == 2
    assert out.getvalue().startswith("PASS: refgrad: ")
    assert err.getvalue().endswith(
        "refgrad: error: --html: could not write the card: [Errno 28] No space left on device\n"
    )


def test_the_page_beside_a_json_card_and_after_a_replay_that_fails(tmp_path: Path) -> None:
    """--format json keeps stdout one JSON object; a run stopped by a stored failure writes no page, and says so."""
    database, page = tmp_path / "db", tmp_path / "card.html"

    def run(output_format: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = run_verify(
            "_corpus:ManyBugs",
            examples=20,
            seed=0,
            ops=None,
            out=out,
            err=err,
            database=database,
            isolate=False,
            output_format=output_format,
            html=page,
        )
        return status, out.getvalue(), err.getvalue()

    status, out, _ = run("json")
    assert status == 1
    assert json.loads(out)["verdict"] == "fail"  # the whole of standard output
    first = page.read_text(encoding="utf-8")
    assert "FAIL: _corpus:ManyBugs" in first
    status, out, err = run("text")
    assert status == 1
    assert "the random run was not started" in out
    assert (
        f"refgrad: warning: --html: no page written (the run stopped at the stored counterexamples); {str(page)!r}"
        in err
    )
    assert page.read_text(encoding="utf-8") == first


def test_a_link_at_the_path_is_replaced_by_the_page_and_an_unwritable_folder_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page goes where the user said, whole: a symbolic link there is replaced, its target left alone."""
    report = verify(MicrogradStyleEngine(ManyBugs), examples=5, seed_value=0, ops=("add",))
    elsewhere = tmp_path / "elsewhere.html"
    elsewhere.write_text("another file", encoding="utf-8")
    link = tmp_path / "card.html"
    link.symlink_to(elsewhere)
    assert write_html(report, link) == link
    assert not link.is_symlink()
    assert link.read_text(encoding="utf-8") == format_html(report)
    assert elsewhere.read_text(encoding="utf-8") == "another file"

    def no_writing(path: object, mode: int) -> bool:
        return mode != os.W_OK

    monkeypatch.setattr("refgrad.oracle.page.os.access", no_writing)  # root may write anywhere: say it may not
    with pytest.raises(ValueError, match="is not writable"):
        write_html(report, tmp_path / "card.html")
