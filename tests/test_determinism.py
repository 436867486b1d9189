"""The same program gives the same bits: across runs, and across processes whose hash seeds differ.

Python randomizes the hashes of strings per process (``PYTHONHASHSEED``), and a node hashes by
identity, that is by address; so any numeric path that iterated over a set, or over a dict in hash
order, could visit nodes in a different order from one process to the next and add gradients up
in a different order. refgrad's paths visit nodes in creation order (reverse mode sorts the nodes
it finds by their place in it) and its dicts iterate in insertion order. This test runs one
nontrivial program (moons training with SGD, Adam steps, every kind of differentiation, the
micrograd surface's training) in child processes with different hash seeds and in this process,
and compares the hex dumps of every float.

Run as a script (``python tests/test_determinism.py``) it prints the dump.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import refgrad
from refgrad import Value, grad, hessian, jvp
from refgrad.micrograd import nn as micrograd_nn
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.moons import train
from refgrad.nn import MLP
from refgrad.optim import Adam

HASH_SEEDS = ("0", "1", "2026", "random")


def _hex(values: Iterable[float]) -> str:
    return " ".join(value.hex() for value in values)


def dump() -> str:
    """Every float the program computes, one labelled line each, as exact hex."""
    lines: list[str] = []
    run = train(steps=4, seed=7, samples=24)
    lines.append("sgd losses " + _hex(record.loss for record in run.history))
    lines.append("sgd parameters " + _hex(p.data for p in run.model.parameters()))
    lines.append("sgd final loss " + _hex([run.final_loss]))

    model = MLP.init(2, [8, 8, 1], rng=11)
    adam = Adam(learning_rate=0.05, weight_decay=1e-3)
    state = adam.init(model)
    points = [(0.5, -0.25), (-1.0, 0.75), (0.125, 2.0)]
    targets = (1.0, -1.0, 0.5)
    for step in range(3):
        loss = sum(
            ((model(point)[0] - target) ** 2 for point, target in zip(points, targets, strict=True)),
            Value(0.0),
        )
        gradients = loss.backward()
        lines.append(f"adam {step} loss " + _hex([loss.data]))
        lines.append(f"adam {step} gradients " + _hex(gradients[p] for p in model.parameters()))
        model, state = adam.step(model, gradients, state)
    lines.append("adam moments " + _hex(state.exp_avg) + " | " + _hex(state.exp_avg_sq))

    x, y = Value(0.75, label="x"), Value(-1.5, label="y")
    (score,) = model([x, y])
    out = score * (x * y).tanh() + (x**3.0).exp().log() - (y / 2.0).sigmoid() + abs(x - y) ** 1.5
    lines.append("grad " + _hex(grad(out, (x, y))))
    first = grad(out, (x, y), create_graph=True)
    lines.append("grad of grad " + _hex(value for g in first for value in grad(g, (x, y))))
    lines.append("jvp " + _hex([jvp(out, (x, y), (0.25, -2.0))]))
    lines.append("hessian " + _hex(value for row in hessian(out, (x, y)) for value in row))
    all_gradients = out.backward()
    lines.append("backward " + _hex(all_gradients[node] for node in refgrad.nodes(out)))

    saved = random.getstate()
    random.seed(3)
    try:
        micrograd_model = micrograd_nn.MLP(2, [4, 1])
    finally:
        random.setstate(saved)
    for step in range(2):
        micrograd_loss = MicrogradValue(0.0)
        for point in points:
            output = micrograd_model(point)
            assert isinstance(output, MicrogradValue)  # the last layer has one neuron
            micrograd_loss = micrograd_loss + (output - 1.0) ** 2
        micrograd_model.zero_grad()
        micrograd_loss.backward()
        for p in micrograd_model.parameters():
            p.data -= 0.1 * p.grad
        lines.append(f"micrograd {step} " + _hex(p.data for p in micrograd_model.parameters()))
    return "\n".join(lines) + "\n"


def _dump_in_a_child(hash_seed: str) -> str:
    # The child imports the refgrad this process imported, wherever it lives.
    source_root = str(Path(refgrad.__file__).resolve().parent.parent)
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": source_root}
    completed = subprocess.run(
        [sys.executable, __file__], env=environment, capture_output=True, text=True, check=True, timeout=120
    )
    return completed.stdout


def test_the_dump_is_substantial() -> None:
    """The program computes hundreds of floats (so the comparison below compares something)."""
    text = dump()
    assert len(text.split()) > 500
    assert text == dump()  # twice in one process: the same bits


@pytest.mark.slow
def test_processes_with_different_hash_seeds_compute_the_same_bits() -> None:
    """Four child processes (hash seeds 0, 1, 2026, random) and this one print byte-identical dumps."""
    here = dump()
    for hash_seed in HASH_SEEDS:
        child = _dump_in_a_child(hash_seed)
        assert child == here, f"PYTHONHASHSEED={hash_seed}"


if __name__ == "__main__":
    sys.stdout.write(dump())
