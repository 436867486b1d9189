"""Small deterministic data sets for the demos, with no dependency on NumPy or scikit-learn.

:func:`make_moons` draws scikit-learn's two interleaving half circles, the data
micrograd's demo notebook trains on. Everything comes from a seeded
:class:`random.Random`, so the same arguments always give the same points, and
the results are plain tuples of floats and ints.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from refgrad.numeric import as_finite_float

__all__ = ["Moons", "make_moons"]


class Moons(NamedTuple):
    """Points and their labels, aligned: ``points[i]`` is an ``(x, y)`` pair labelled ``labels[i]``.

    A plain tuple underneath, so ``points, labels = make_moons(...)`` works.
    """

    points: tuple[tuple[float, float], ...]
    """``(x, y)`` coordinates, one pair per sample."""
    labels: tuple[int, ...]
    """``0`` for the outer (upper) moon, ``1`` for the inner (lower) one, as scikit-learn."""


def _linspace_0_to_pi(count: int) -> list[float]:
    # As numpy.linspace(0, pi, count): i * step, with the last point exactly pi.
    if count <= 1:
        return [0.0] * count
    step = math.pi / (count - 1)
    angles = [i * step for i in range(count)]
    angles[-1] = math.pi
    return angles


def make_moons(n: int, noise: float, seed: int, *, shuffle: bool = True) -> Moons:
    """``n`` points on two interleaving half circles, scikit-learn's ``make_moons`` geometry.

    ``n // 2`` points lie on the outer moon ``(cos t, sin t)`` (label ``0``), the
    other ``n - n // 2`` on the inner moon ``(1 - cos t, 1 - sin t - 0.5)``
    (label ``1``), with ``t`` evenly spaced over ``[0, pi]`` on each moon. With
    ``shuffle`` (the default, as in scikit-learn) the samples are put in a
    random order; then each coordinate gets Gaussian noise of standard
    deviation ``noise``. All randomness comes from ``random.Random(seed)``:
    equal arguments give equal results, and no global state is read or changed.

    The random draws are Python's, not NumPy's, so the points are not the ones
    scikit-learn gives for the same seed; the shape and the labels' meaning are.

    >>> points, labels = make_moons(4, 0.0, seed=0, shuffle=False)
    >>> labels
    (0, 0, 1, 1)
    >>> points[0], points[2]
    ((1.0, 0.0), (0.0, 0.5))
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    noise = as_finite_float(noise, "noise")
    if noise < 0.0:
        raise ValueError(f"noise must be >= 0 (a standard deviation), got {noise!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")

    rng = random.Random(seed)
    n_outer = n // 2
    n_inner = n - n_outer
    points = [(math.cos(t), math.sin(t)) for t in _linspace_0_to_pi(n_outer)]
    points += [(1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5) for t in _linspace_0_to_pi(n_inner)]
    labels = [0] * n_outer + [1] * n_inner

    if shuffle:
        order = list(range(n))
        rng.shuffle(order)
        points = [points[i] for i in order]
        labels = [labels[i] for i in order]
    if noise > 0.0:
        points = [(x + rng.gauss(0.0, noise), y + rng.gauss(0.0, noise)) for x, y in points]
    return Moons(tuple(points), tuple(labels))
