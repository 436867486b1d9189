"""refgrad.viz: DOT text that Graphviz's dot accepts, with every node, op and edge, labels shown literally."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from refgrad import Value, grad, registry
from refgrad.cli import seed_example
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.viz import render, save, to_dot

DOT = shutil.which("dot")
SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def _dot_to_svg(text: str) -> str:
    """Run Graphviz's dot on ``text``; fail the test on any error or warning."""
    assert DOT is not None, "Graphviz's dot is needed (apt-get install graphviz; .ci/run installs it)"
    result = subprocess.run([DOT, "-Tsvg"], input=text.encode("utf-8"), capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return result.stdout.decode("utf-8")


def _svg_texts(svg: str) -> list[str]:
    return [element.text or "" for element in ET.fromstring(svg).iter(SVG_TEXT)]


def _all_nodes(output: Value) -> list[Value]:
    seen: dict[Value, None] = {output: None}
    stack = [output]
    while stack:
        for inp in stack.pop().inputs:
            if inp not in seen:
                seen[inp] = None
                stack.append(inp)
    return list(seen)


def _records(text: str) -> list[str]:
    return re.findall(r"^  n\d+ \[shape=record", text, flags=re.MULTILINE)


def _op_nodes(text: str) -> list[str]:
    return re.findall(r"^  n\d+op \[label=", text, flags=re.MULTILINE)


def _edges(text: str) -> list[str]:
    return re.findall(r"^  \w+ -> \w+;$", text, flags=re.MULTILINE)


def test_seed_example_renders_with_dot() -> None:
    """The seed example's DOT text is accepted by dot without warnings; a and b show their gradients."""
    a, b, g = seed_example()
    text = to_dot(g, g.backward())
    svg = _dot_to_svg(text)
    texts = _svg_texts(svg)
    grad_a, grad_b = grad(g, (a, b))
    assert "a" in texts
    assert "b" in texts
    assert f"grad {grad_a:.4f}" in texts
    assert f"grad {grad_b:.4f}" in texts
    assert f"data {g.data:.4f}" in texts


def test_every_node_op_and_edge_is_drawn() -> None:
    """One record per node, one op node per non-leaf, one edge per operand plus one per op result."""
    _, _, g = seed_example()
    nodes = _all_nodes(g)
    text = to_dot(g, g.backward())
    assert len(_records(text)) == len(nodes)
    assert len(_op_nodes(text)) == sum(1 for n in nodes if n.op is not None)
    assert len(_edges(text)) == sum(len(n.inputs) + 1 for n in nodes if n.op is not None)


def test_repeated_operand_has_two_edges() -> None:
    """x * x draws two edges from x into the multiplication: inputs are a tuple, not a set."""
    x = Value(3.0, label="x")
    text = to_dot(x * x)
    assert len(_edges(text)) == 3
    assert len(_records(text)) == 2
    _dot_to_svg(text)


def test_op_nodes_show_the_registry_symbol() -> None:
    """Each op node carries its registry entry's symbol; x ** 3 also shows its exponent, as micrograd."""
    x = Value(0.5)
    y = Value(2.0)
    results = {
        "add": x + y,
        "sub": x - y,
        "mul": x * y,
        "div": x / y,
        "neg": -x,
        "pow": x**3,
        "vpow": x**y,
        "exp": x.exp(),
        "log": x.log(),
        "tanh": x.tanh(),
        "sigmoid": x.sigmoid(),
        "relu": x.relu(),
        "abs": x.abs(),
    }
    assert set(results) == set(registry.names)
    for name, node in results.items():
        text = to_dot(node)
        expected = registry[name].symbol + ("3" if name == "pow" else "")
        assert f'[label="{expected}"]' in text, name
        assert expected in _svg_texts(_dot_to_svg(text))


@pytest.mark.parametrize(
    "label",
    [
        'say "hi"',
        "{braces}",
        "}|}{",
        "a|b",
        "<port>",
        "back\\slash",
        "trailing\\",
        "\\N \\G \\L",  # DOT's own escapes, shown literally
        '"',
        "ünïcode ∂x",
    ],
)
def test_labels_are_shown_literally(label: str) -> None:
    """Quotes, braces, pipes, angle brackets and backslashes in labels reach the picture unchanged."""
    node = Value(1.5, label=label) * Value(2.0, label="other")
    text = to_dot(node, node.backward())
    assert label in _svg_texts(_dot_to_svg(text))


def test_newlines_and_control_characters_are_safe() -> None:
    """A newline breaks the label into lines; other control characters are shown by their code."""
    node = Value(1.0, label="first\nsecond") + Value(2.0, label="bell\x07esc\x1b") + Value(3.0, label="a\r\nb\tc")
    texts = _svg_texts(_dot_to_svg(to_dot(node)))
    assert "first" in texts
    assert "second" in texts
    assert "bell\\x07esc\\x1b" in texts
    assert "a" in texts
    assert "b c" in texts


def test_quotes_cannot_break_out_of_the_label() -> None:
    """A label crafted to close the string and add attributes stays inside its record."""
    sneaky = 'x"]; evil [label="pwned'
    svg = _dot_to_svg(to_dot(Value(1.0, label=sneaky) + 1.0))
    titles = [element.text for element in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}title")]
    assert "evil" not in titles
    assert sneaky in _svg_texts(svg)


def test_without_gradients_no_grad_field_for_refgrad_values() -> None:
    """to_dot(output) of a refgrad Value shows label and data only (it holds no gradient)."""
    _, _, g = seed_example()
    text = to_dot(g)
    assert "| grad " not in text
    assert "| grad " in to_dot(g, g.backward())
    _dot_to_svg(text)


def test_micrograd_values_show_their_grad() -> None:
    """A micrograd-surface graph is drawn with each node's .grad after backward()."""
    a = MicrogradValue(-4.0, label="a")
    b = MicrogradValue(2.0, label="b")
    out = (a * b + b**3).relu()
    out.backward()
    text = to_dot(out)
    texts = _svg_texts(_dot_to_svg(text))
    assert f"grad {a.grad:.4f}" in texts
    assert f"grad {b.grad:.4f}" in texts
    assert "ReLU" in texts


def test_large_graphs_are_capped_and_collapsed() -> None:
    """A 100 000-node chain (far deeper than the recursion limit) is cut to max_nodes plus one placeholder."""
    x = Value(0.0, label="x")
    node = x
    for _ in range(50_000):
        node = (node + 1.0).relu()
    total = len(_all_nodes(node))
    text = to_dot(node, max_nodes=40)
    assert len(_records(text)) == 40
    assert f"... {total - 40} more nodes not shown" in text
    assert "hidden -> " in text
    svg = _dot_to_svg(text)
    assert f"... {total - 40} more nodes not shown" in _svg_texts(svg)
    # Uncapped, the walk still needs no recursion; it just draws everything.
    assert len(_records(to_dot(node, max_nodes=None))) == total


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: to_dot(3.0), TypeError, "output must be a refgrad.Value"),  # type: ignore[arg-type]  # deliberately wrong
        (lambda: to_dot(Value(1.0), [1.0]), TypeError, "gradients must be a mapping"),  # type: ignore[arg-type]  # as above
        (lambda: to_dot(Value(1.0), max_nodes=0), ValueError, "max_nodes must be at least 1"),
        (lambda: to_dot(Value(1.0), max_nodes=2.5), TypeError, "max_nodes must be an int"),  # type: ignore[arg-type]  # as above
        (lambda: to_dot(Value(1.0), rankdir="RL"), ValueError, "rankdir must be"),  # type: ignore[arg-type]  # as above
        (lambda: render(Value(1.0), "out.xyz", format="xyz"), ValueError, "unknown Graphviz output format"),
        (lambda: save(Value(1.0), "no_suffix"), ValueError, "cannot tell the picture format"),
    ],
)
def test_bad_arguments_are_clear_errors(call: object, error: type[Exception], match: str) -> None:
    """Wrong types are TypeErrors and bad values ValueErrors naming the argument."""
    assert callable(call)
    with pytest.raises(error, match=match):
        call()


def test_render_writes_svg_and_png(tmp_path: Path) -> None:
    """render() draws through the graphviz package: an SVG document, a PNG file."""
    _, _, g = seed_example()
    svg_path = render(g, tmp_path / "seed.svg", g.backward())
    assert "grad 138.8338" in _svg_texts(svg_path.read_text(encoding="utf-8"))
    png_path = render(g, tmp_path / "seed.png", g.backward(), format="png")
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_save_picks_the_format_from_the_suffix(tmp_path: Path) -> None:
    """save() writes DOT text for .dot (no dependency) and renders .svg."""
    _, _, g = seed_example()
    dot_path = save(g, tmp_path / "seed.dot", g.backward())
    assert dot_path.read_text(encoding="utf-8") == to_dot(g, g.backward())
    svg_path = save(g, tmp_path / "seed.svg")
    assert svg_path.read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_render_without_the_graphviz_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the graphviz package missing, render() raises ImportError telling how to install the viz extra."""
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'refgrad[viz]'")):
        render(Value(1.0), tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()


def test_render_without_dot_says_to_install_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no dot program on PATH, render() raises a RuntimeError saying to install Graphviz."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="install Graphviz"):
        render(Value(1.0), tmp_path / "x.svg")


def test_optional_dependencies_are_not_imported_eagerly() -> None:
    """Importing refgrad, its models, viz and the moons demo loads neither graphviz nor matplotlib."""
    code = (
        "import sys, refgrad, refgrad.nn, refgrad.optim, refgrad.datasets, refgrad.viz, refgrad.moons, refgrad.cli;"
        "print(sorted(m for m in ('graphviz', 'matplotlib', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
