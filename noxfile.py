"""Development sessions: ``nox`` runs the checks and tests (see nox.options.sessions); ``nox -s bench`` benchmarks."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from functools import cache

import nox

# Sessions that run concurrently (--parallel, see below) came with nox 2026.10.
nox.needs_version = ">=2026.10"
nox.options.sessions = ["typecheck", "tests", "tests_typeguard", "lint", "docs", "without_torch"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
# uv makes the session environments (`pip install 'nox[uv]'` brings it): in a fraction of the time
# pip takes, and from one cache, so the four environments that hold torch unpack it once. Without
# uv, nox falls back to virtualenv and pip.
nox.options.default_venv_backend = "uv|virtualenv"
# The default sessions run side by side, each in its own process with its output printed whole when
# it ends: installing packages and type checking leave a core idle, which the tests take up.
# `nox -j 1` runs them one after the other.
nox.options.parallel = len(nox.options.sessions)

# A local CPU build of torch; an open range would fetch a multi-GB CUDA build.
TORCH = "torch==2.13.0"
MICROGRAD = "micrograd==0.1.0"
# pytest below 9.2: with 9.2, pytest-xdist's --dist=loadgroup silently stops grouping (pytest-xdist
# issue 1386: the group suffix no longer reaches the scheduler), so fixtures meant to be computed once
# per group were computed on each worker. Lift the cap when a pytest-xdist release works with 9.2.
TEST_TOOLS = ["pytest>=8,<9.2", "pytest-xdist>=3.6", "hypothesis>=6.100", "numpy"]
# The viz and demo extras: graph pictures and the moons plot are tested (and type-checked) too.
PICTURES = ["graphviz>=0.20", "matplotlib>=3.7"]
# pyright's wheel bundles its JavaScript; the nodejs extra brings Node.js as a wheel too, so nothing
# is downloaded when it first runs. Pinned: a new release may add checks.
PYRIGHT = "pyright[nodejs]==1.1.414"
TYPEGUARD = "typeguard>=4.4"
COVERAGE = "pytest-cov>=6"
MUTMUT = "mutmut==3.8.1"
# The fast part of the suite: no slow-marked tests (deep graphs, the CLI in child processes, micrograd's
# whole demo), no benchmarks.
FAST_TESTS = ["-m", "not slow", "--ignore=tests/benchmarks"]
# One pytest-xdist worker per core. loadgroup keeps the tests of an xdist_group on one worker, so that
# a session fixture they share (the moons training runs) is computed once.
PARALLEL = ["--numprocesses=auto", "--dist=loadgroup"]
# The slowest tests and fixtures, printed at the end of each run so that the suite stays fast.
DURATIONS = ["--durations=15", "--durations-min=2"]


@cache
def _pip_options_for_uv() -> tuple[str, ...]:
    """pip's configured find-links (and no-index), as uv options: uv reads none of pip's configuration.

    Some machines keep wheels on disk for pip (a CPU build of torch, say) and say so in pip's
    configuration: handed the same find-links, uv sees the same files. pip's index settings are
    not handed on (uv asks PyPI), but for no-index, which keeps uv off the network as it keeps
    pip. Nothing when pip has no such settings (or no pip is there to ask).
    """
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    options: list[str] = []
    for line in listed.splitlines():  # key='value', the value a Python literal
        key, _, written = line.partition("=")
        try:
            value = ast.literal_eval(written)
        except (ValueError, SyntaxError):
            continue
        if not isinstance(value, str):
            continue
        if key.endswith(".find-links"):
            for link in value.split():
                if link not in options:
                    options += ["--find-links", link]
        elif key.endswith(".no-index") and value.lower() in {"1", "true", "yes", "on"} and "--no-index" not in options:
            options.append("--no-index")
    return tuple(options)


def _install(session: nox.Session, *packages: str) -> None:
    """Install without compiling to bytecode; Python compiles what the session imports, once.

    pip compiles every module it installs unless told not to (more than half of installing torch,
    most of which no session imports); uv never does. Python compiles a module when it is first
    imported and keeps the bytecode, unless PYTHONDONTWRITEBYTECODE is set (as on some CI images):
    the sessions unset it, so that each process does not compile torch again.
    """
    session.env["PYTHONDONTWRITEBYTECODE"] = None
    options = _pip_options_for_uv() if session.venv_backend == "uv" else ("--no-compile",)
    session.install(*options, *packages)


def _install_oracle(session: nox.Session, *packages: str) -> None:
    """torch (the pinned CPU build), refgrad with its oracle extra, and ``packages``, in one install."""
    _install(session, TORCH, "-e", ".[oracle]", *packages)


@nox.session(allow_parallel=True)
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) over refgrad/, tests/ and noxfile.py."""
    _install_oracle(session, "mypy>=1.10", PYRIGHT, "nox", MICROGRAD, TYPEGUARD, COVERAGE, *TEST_TOOLS, *PICTURES)
    session.run("mypy")
    # This session's interpreter, where the optional libraries resolve (pyproject.toml names it too).
    python = os.path.join(session.bin, "python")
    # IGNORE_WARNINGS: no look-up of the newest pyright release; the pinned one is the one that counts.
    session.run("pyright", "--pythonpath", python, env={"PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"})


@nox.session(allow_parallel=True)
def tests(session: nox.Session) -> None:
    """The test suite, with PyTorch (float64) and micrograd 0.1.0 as references; branch coverage of refgrad/."""
    # typeguard: the typeguard pass's own helpers are tested here (tests/test_typeguard_policy.py).
    _install_oracle(session, MICROGRAD, COVERAGE, TYPEGUARD, *TEST_TOOLS, *PICTURES)
    # Settings in pyproject.toml ([tool.coverage]): branches, refgrad/ only, child processes included.
    session.run("pytest", *PARALLEL, *DURATIONS, "--cov", "--cov-report=term-missing:skip-covered", *session.posargs)


# The tests session measures coverage with repeats paused: six 100-step trainings and the longest chains
# (tests/_coverage_repeats.py), and the tests tests/coverage_repeats.txt lists. `nox -s coverage_repeats`
# runs the suite with and without them measured and checks that nothing is lost; `-- write` first
# records the suite with a coverage context per test and chooses the list again.
COVERAGE_REPEATS = "tests/coverage_repeats.txt"


@nox.session
def coverage_repeats(session: nox.Session) -> None:
    """The suite twice, repeats measured and not: the second run must measure each line and branch the first does."""
    _install_oracle(session, MICROGRAD, COVERAGE, TYPEGUARD, *TEST_TOOLS, *PICTURES)
    tmp = session.create_tmp()
    # Derandomized, as on CI (tests/conftest.py): every run draws the same hypothesis examples.
    session.env["CI"] = "true"
    write = "write" in session.posargs
    pytest_args = [arg for arg in session.posargs if arg != "write"]
    if write:
        folder = os.path.join(tmp, "recording")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        recording = os.path.join(folder, "contexts.coverage")
        env = {"REFGRAD_COVERAGE_RECORD": folder, "COVERAGE_FILE": recording}
        session.run("pytest", *PARALLEL, "--cov", "--cov-context=test", "--cov-report=", *pytest_args, env=env)
        session.run("python", "tests/coverage_repeats.py", "choose", recording, folder, COVERAGE_REPEATS)
    runs = {"everything": {"REFGRAD_COVERAGE_OF_REPEATS": "1"}, "paused": {}}
    for name, env in runs.items():
        data = os.path.join(tmp, f"{name}.coverage")
        session.run("pytest", *PARALLEL, "--cov", "--cov-report=", *pytest_args, env={**env, "COVERAGE_FILE": data})
    data_files = (os.path.join(tmp, f"{name}.coverage") for name in runs)
    session.run("python", "tests/coverage_repeats.py", "check", *data_files)


# The typeguard pass leaves out the fast tests listed here: every type flow each of them checks is
# checked by a test that stays (tests/typeguard_repeats.py; `nox -s typeguard_flows` re-checks it).
TYPEGUARD_REPEATS = "tests/typeguard_repeats.txt"


def _typeguard_pytest(session: nox.Session, *args: str) -> None:
    # coverage: the check of the coverage pauses (tests/test_coverage_repeats.py) reads coverage data.
    _install_oracle(session, MICROGRAD, TYPEGUARD, COVERAGE, *TEST_TOOLS, *PICTURES)
    session.run(
        "python",
        "-m",  # puts the project directory on sys.path, for the tests._typeguard_policy plugin
        "pytest",
        "--typeguard-packages=refgrad",
        "-p",
        "tests._typeguard_policy",
        "--typeguard-typecheck-fail-callback=tests._typeguard_policy:check_unless_a_test_passed_it",
        *PARALLEL,
        *DURATIONS,
        *FAST_TESTS,
        *args,
    )


@nox.session(allow_parallel=True)
def tests_typeguard(session: nox.Session) -> None:
    """The fast tests again (less repeats of checked flows), with typeguard checking every annotation in refgrad/."""
    _typeguard_pytest(session, f"--typeguard-leave-out={TYPEGUARD_REPEATS}", *session.posargs)


@nox.session
def typeguard_flows(session: nox.Session) -> None:
    """All fast tests under typeguard, recording type flows; checks (or with `write`, rewrites) the repeats list."""
    flows = os.path.join(session.create_tmp(), "typeguard-flows.json")
    _typeguard_pytest(session, f"--typeguard-flows={flows}")
    check = [] if session.posargs == ["write"] else ["--check"]
    session.run("python", "tests/typeguard_repeats.py", flows, TYPEGUARD_REPEATS, *check)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the registry, the node and autodiff; regenerates docs/mutation.md."""
    _install_oracle(session, MUTMUT, MICROGRAD, *TEST_TOOLS)
    # Settings in pyproject.toml ([tool.mutmut]). Every run starts afresh, so the page reports this code.
    shutil.rmtree("mutants", ignore_errors=True)
    session.run("mutmut", "run", "--max-children", str(os.cpu_count() or 2))
    session.run("python", "tests/mutation/report.py", "docs/mutation.md")


@nox.session(allow_parallel=True)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _install(session, "ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(allow_parallel=True)
def docs(session: nox.Session) -> None:
    """Build the documentation with Sphinx, warnings as errors."""
    # The oracle's extra: docs/api.md documents refgrad.oracle, which imports torch and hypothesis.
    _install_oracle(session, "numpy", "sphinx>=7", "myst-parser>=2", "furo")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against micrograd 0.1.0 and torch scalar autograd; regenerates docs/performance.md."""
    _install_oracle(session, MICROGRAD, "matplotlib")
    session.run("python", "tests/benchmarks/bench_training.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Install refgrad and run the seed example."""
    _install(session, "-e", ".")
    session.run("python", "-m", "refgrad", "demo")


@nox.session
def accuracy(session: nox.Session) -> None:
    """Regenerate docs/accuracy.md: refgrad and torch float64 per op, in ulps of the exact reference."""
    _install_oracle(session)
    session.run("python", "tests/benchmarks/accuracy.py", "--write", "docs/accuracy.md", env={"PYTHONPATH": "."})


@nox.session
def without_torch(session: nox.Session) -> None:
    """A fresh environment with refgrad's exact extra only (hypothesis, mpmath; no torch) runs verify on refgrad."""
    _install(session, "-e", ".[exact]")
    session.run("python", "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)")
    session.run("python", "-m", "refgrad", "verify", "--no-database", "--examples", "1000", *session.posargs)


@nox.session
def verify(session: nox.Session) -> None:
    """The oracle on refgrad, --strict: structured and random graphs against torch, the exact reference and f.d.

    posargs go to verify after --strict (refgrad's engines are held to every finding, warnings included).
    """
    _install_oracle(session)
    session.run("python", "-m", "refgrad", "verify", "--strict", *session.posargs)
