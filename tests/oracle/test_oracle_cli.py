"""``python -m refgrad verify``: exit codes, usage errors, determinism, the table and the printed counterexample."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refgrad.cli import VERIFY_EXAMPLES, main
from refgrad.ops import registry
from refgrad.oracle.command import run_verify

_TOY = Path(__file__).with_name("_toy_engine.py")


def _verify(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No example database unless the test asks: a run must not replay what an earlier one stored.
    database = [] if "--database" in arguments or cwd is not None else ["--no-database"]
    return subprocess.run(
        [sys.executable, "-m", "refgrad", "verify", *arguments, *database],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _without_timing(text: str) -> str:
    return re.sub(r"^.* graphs/s$", "", text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--engine", "tensorflow"], "unknown engine 'tensorflow'"),
        (["--engine", "no_such_module_xyz:Value"], "cannot import module 'no_such_module_xyz'"),
        (["--engine", "refgrad:Missing"], "has no attribute 'Missing'"),
        (["--ops", "mul,cosh"], "no op named 'cosh'"),
        (["--ops", ","], "at least one op"),
        (["--examples", "0"], "at least 1"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    """Bad engines and options: exit 2, one line on stderr naming the problem, nothing on stdout."""
    out, err = io.StringIO(), io.StringIO()
    engine = arguments[1] if arguments[0] == "--engine" else "refgrad"
    ops = arguments[1] if arguments[0] == "--ops" else None
    examples = int(arguments[1]) if arguments[0] == "--examples" else 10
    status = run_verify(engine, examples=examples, seed=0, ops=ops, out=out, err=err)
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1
    assert err.getvalue().startswith("refgrad: error: ")
    assert message in err.getvalue()


@pytest.mark.slow
def test_argparse_errors_exit_2_in_a_subprocess() -> None:
    """A malformed option from the real command line: exit 2, one line, no traceback."""
    result = _verify("--examples", "many")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "invalid int value" in result.stderr


@pytest.mark.slow
def test_missing_extras_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """Without torch, verify checks against the exact reference; asking for torch says to install the oracle extra.

    demo still works; without mpmath, verify names the exact extra.
    """
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['torch'] = None\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    command = [sys.executable, "-m", "refgrad", "verify", "--no-database"]
    verify = subprocess.run(
        [*command, "--reference", "torch"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert verify.returncode == 2
    assert verify.stderr.count("\n") == 1
    assert "refgrad[oracle]" in verify.stderr
    exact = subprocess.run(
        [*command, "--examples", "200"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert exact.returncode == 0, exact.stderr
    assert exact.stdout.startswith("PASS: refgrad"), exact.stdout
    assert "mpmath" in exact.stdout
    assert "torch" not in exact.stderr
    blocker.write_text("import sys\nsys.modules['torch'] = None\nsys.modules['mpmath'] = None\n", encoding="utf-8")
    verify = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert verify.returncode == 2
    assert verify.stderr.count("\n") == 1
    assert "refgrad[exact]" in verify.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "refgrad", "demo"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert demo.returncode == 0, demo.stderr


@pytest.mark.slow
def test_without_numpy_torch_says_nothing(tmp_path: Path) -> None:
    """torch warns on import when NumPy is missing; the oracle needs no NumPy, so a run prints only its own lines."""
    # As where NumPy is not installed: importing it fails (sys.modules['numpy'] = None would
    # tell hypothesis that it is loaded).
    (tmp_path / "numpy.py").write_text("raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    command = [sys.executable, "-m", "refgrad", "verify", "--examples", "3", "--ops", "add", "--no-database"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "refgrad verify: 3 random graphs on refgrad, seed 0, add\n"
    assert run.stdout.startswith("PASS: refgrad: ")


@pytest.mark.slow
def test_a_passing_run_prints_the_table_and_is_deterministic() -> None:
    """Exit 0, a row per op, the verdict; the same seed gives the same output (timings aside)."""
    first = _verify("--examples", "120", "--seed", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    verdict, table = first.stdout.split("\n\n")[:2]
    assert verdict.startswith("PASS: refgrad: 0 defects, 0 warnings; checked 22 of 22 op forms")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["op", "status", "graphs", "value"]
    for name in registry.names:
        assert any(line.split()[0] == name for line in lines[1:] if line.strip())
    assert "OK: every check agreed" in first.stdout
    assert "120 graphs checked" in first.stdout
    assert "graphs checked (" not in first.stderr  # progress is for terminals, not for pipes and logs
    second = _verify("--examples", "120", "--seed", "4")
    assert _without_timing(second.stdout) == _without_timing(first.stdout)


@pytest.mark.slow
def test_a_run_leaves_nothing_in_the_users_folder(tmp_path: Path) -> None:
    """hypothesis's cache goes to refgrad's folder in the cache directory, not .hypothesis/ where the user is."""
    folder, cache = tmp_path / "work", tmp_path / "cache"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "refgrad", "verify", "--examples", "20", "--ops", "mul", "--no-database"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "XDG_CACHE_HOME": str(cache)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(folder.iterdir()) == []
    assert (cache / "refgrad" / "hypothesis").is_dir()


def test_ops_restricts_the_run() -> None:
    """--ops draws only the ops listed."""
    result = _verify("--examples", "60", "--ops", "mul,tanh", "--engine", "micrograd-compat")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("\n\n")[1]
    rows = [line.split()[0] for line in table.splitlines()[1:]]
    assert rows[:2] == ["mul", "tanh"]
    assert "add" not in rows


@pytest.mark.slow
def test_a_failing_engine_exits_1_with_a_script_that_reproduces_it(tmp_path: Path) -> None:
    """A broken engine from the current directory: exit 1, a small counterexample, and a script showing it."""
    shutil.copy(_TOY, tmp_path / "_toy_engine.py")
    result = _verify("--engine", "_toy_engine:WrongTanh", "--examples", "500", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout
    assert "counterexample: defect 1 [wrong-derivative]: 1 step(s)" in result.stdout
    script = result.stdout.split("reproduce it (engine, then the reference):", 1)[1]
    (tmp_path / "repro.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    shown = subprocess.run(
        [sys.executable, "repro.py"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=True
    )
    engine_line, torch_line = shown.stdout.splitlines()
    assert engine_line.startswith("engine:")
    assert torch_line.startswith("torch:")
    engine_numbers, torch_numbers = _numbers(engine_line), _numbers(torch_line)
    # The same value, a different gradient: the planted tanh derivative.
    assert engine_numbers[0] == pytest.approx(torch_numbers[0], rel=1e-15)
    assert engine_numbers[1:] != pytest.approx(torch_numbers[1:], rel=1e-6)


def _numbers(line: str) -> list[float]:
    cleaned = line.split(":", 1)[1].replace("[", " ").replace("]", " ").replace(",", " ")
    return [float(word) for word in cleaned.split()]


@pytest.mark.slow
def test_micrograd_0_1_0_runs_with_unsupported_ops_left_out() -> None:
    """micrograd 0.1.0 from PyPI runs; ops it lacks are listed as left out, not as failures."""
    result = _verify("--engine", "micrograd.engine:Value", "--examples", "100")
    assert result.returncode in (0, 1), result.stderr
    assert "left out (the engine does not support them)" in result.stdout
    for op in ("exp", "log", "tanh", "sigmoid", "abs"):
        assert f"{op}: no method" in result.stdout or f"{op}: no abs method" in result.stdout
    rows = {line.split()[0] for line in result.stdout.split("\n\n")[1].splitlines()[1:]}
    assert rows == {"add", "sub", "mul", "div", "neg", "pow", "relu"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--database", "somewhere", "--no-database"], "--database and --no-database do not go together"),
        (["--program", "p.json", "--ops", "mul"], "--program checks one file, no random graphs: drop --ops"),
        (["--program", "p.json", "--seed", "0"], "drop --seed"),
        (["--program", "p.json", "--examples", "5", "--seed", "3"], "drop --seed, --examples"),
        (
            ["--replay", "--examples", "5"],
            "--replay checks the stored counterexamples, no random graphs: drop --examples",
        ),
    ],
)
def test_options_that_would_be_ignored_are_usage_errors(
    arguments: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An option the run would silently ignore: exit 2 and one line naming it, before anything runs."""
    monkeypatch.chdir(tmp_path)  # nothing may be created in the current directory
    status = main(["verify", *arguments])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith("refgrad: error: ")
    assert captured.err.count("\n") == 1
    assert message in captured.err
    assert list(tmp_path.iterdir()) == []


def test_verify_defaults_apply_when_the_options_are_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --examples and --seed the command line runs the documented defaults (10,000 graphs, seed 0)."""
    calls: list[dict[str, object]] = []

    def recorded(engine: str, **options: object) -> int:
        calls.append({"engine": engine, **options})
        return 0

    monkeypatch.setattr("refgrad.oracle.command.run_verify", recorded)
    assert main(["verify"]) == 0
    (call,) = calls
    assert (call["examples"], call["seed"], call["ops"]) == (VERIFY_EXAMPLES, 0, None)
