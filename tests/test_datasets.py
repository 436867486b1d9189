"""refgrad.datasets.make_moons: scikit-learn's two-moons geometry, deterministic, no global state."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from refgrad.datasets import Moons, make_moons


def test_same_arguments_give_the_same_data() -> None:
    """Two calls with equal arguments return equal points and labels; another seed gives other points."""
    first = make_moons(100, 0.1, seed=1337)
    assert make_moons(100, 0.1, seed=1337) == first
    assert make_moons(100, 0.1, seed=1338).points != first.points


def test_global_random_state_is_untouched() -> None:
    """Drawing a data set neither reads nor advances the random module's global generator."""
    random.seed(99)
    before = random.getstate()
    make_moons(50, 0.2, seed=3)
    assert random.getstate() == before


def test_results_are_plain_tuples_of_floats_and_ints() -> None:
    """A Moons is a tuple (so it unpacks) of tuples of float pairs and of int labels."""
    data = make_moons(10, 0.1, seed=0)
    assert isinstance(data, tuple)
    points, labels = data
    assert isinstance(points, tuple)
    assert isinstance(labels, tuple)
    assert all(type(p) is tuple for p in points)
    assert all(len(p) == 2 for p in points)
    assert all(type(c) is float for p in points for c in p)
    assert all(type(label) is int for label in labels)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 101])
def test_scikit_learn_geometry_without_noise(n: int) -> None:
    """Unshuffled and noiseless: n // 2 outer points (cos t, sin t) labelled 0, then the inner moon labelled 1.

    The angles are numpy.linspace(0, pi, count) on each moon, as in scikit-learn.
    """
    points, labels = make_moons(n, 0.0, seed=0, shuffle=False)
    n_outer, n_inner = n // 2, n - n // 2
    assert labels == (0,) * n_outer + (1,) * n_inner
    t_outer = np.linspace(0, np.pi, n_outer)
    t_inner = np.linspace(0, np.pi, n_inner)
    expected = [(math.cos(t), math.sin(t)) for t in t_outer]
    expected += [(1 - math.cos(t), 1 - math.sin(t) - 0.5) for t in t_inner]
    assert len(points) == n
    for got, want in zip(points, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-15, abs=1e-15)


def test_shuffle_permutes_points_with_their_labels() -> None:
    """Shuffling reorders the samples but keeps every point with its own label."""
    plain = make_moons(40, 0.0, seed=5, shuffle=False)
    shuffled = make_moons(40, 0.0, seed=5)
    assert shuffled.points != plain.points
    assert sorted(zip(shuffled.points, shuffled.labels, strict=True)) == sorted(
        zip(plain.points, plain.labels, strict=True)
    )


def test_noise_is_gaussian_with_the_given_deviation() -> None:
    """With noise s, each coordinate moves by a zero-mean Gaussian of standard deviation about s."""
    n, noise = 4000, 0.1
    clean = make_moons(n, 0.0, seed=11)
    noisy = make_moons(n, noise, seed=11)  # same seed: same shuffle, then the noise draws
    offsets = [
        value - base
        for point, clean_point in zip(noisy.points, clean.points, strict=True)
        for value, base in zip(point, clean_point, strict=True)
    ]
    assert noisy.labels == clean.labels
    # 8000 draws: the sample mean's standard error is 0.1 / sqrt(8000) ~ 0.0011, the deviation's ~ 0.0008.
    assert abs(statistics.fmean(offsets)) < 0.006
    assert statistics.stdev(offsets) == pytest.approx(noise, abs=0.005)


def test_moons_is_exported_type() -> None:
    """make_moons returns the documented Moons named tuple, with points and labels by name."""
    data = make_moons(6, 0.0, seed=0, shuffle=False)
    assert isinstance(data, Moons)
    assert data.labels == (0, 0, 0, 1, 1, 1)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 0.1, 1), ValueError, "n must be at least 1"),
        ((-5, 0.1, 1), ValueError, "n must be at least 1"),
        ((10.0, 0.1, 1), TypeError, "n must be an int"),
        ((True, 0.1, 1), TypeError, "n must be an int"),
        ((10, -0.1, 1), ValueError, "noise must be >= 0"),
        ((10, math.nan, 1), ValueError, "noise must be finite"),
        ((10, "0.1", 1), TypeError, "noise must be a real number"),
        ((10, 0.1, "1337"), TypeError, "seed must be an int"),
        ((10, 0.1, 1.5), TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    args: tuple[object, object, object], error: type[Exception], match: str
) -> None:
    """Wrong types are TypeErrors, out-of-range values ValueErrors, each naming the argument."""
    with pytest.raises(error, match=match):
        make_moons(*args)  # type: ignore[arg-type]  # deliberately wrong input


def test_shuffle_must_be_a_bool() -> None:
    """shuffle takes True or False only."""
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        make_moons(10, 0.1, 1, shuffle=1)  # type: ignore[arg-type]  # deliberately wrong input
