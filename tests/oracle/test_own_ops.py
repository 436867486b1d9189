"""Ops of your own, verified like the built-ins: ``verify --ops-from MODULE`` and ``verify(..., extra_ops=...)``.

The ops are written here, outside refgrad: ``sin`` and ``cos`` (each an entry and a torch name, with
partials written for floats and for nodes), and variants with one planted mistake each. A toy op with
only its entry goes through reverse mode, forward mode, ``create_graph``, the micrograd surface, the
op table and the oracle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from refgrad import Value, apply, grad, jvp
from refgrad.cli import main, op_table
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.ops import Domain, N, OpSpec, Params, registry
from refgrad.ops.extra import extra_ops_argument, load_ops
from refgrad.oracle import verify
from refgrad.oracle.checks import BEYOND_FIRST_ORDER, NO_TORCH
from refgrad.oracle.command import run_verify
from refgrad.oracle.engines import RefgradEngine
from refgrad.oracle.entries import domain_disagreements
from refgrad.oracle.finite_differences import FiniteDifferenceSkip, finite_difference
from refgrad.oracle.first_order import output_error_bound
from refgrad.oracle.optable import op_table as current_ops
from refgrad.oracle.optable import using_ops
from refgrad.oracle.program import Program, Ref, Step
from refgrad.oracle.report import format_report
from refgrad.oracle.torch_reference import torch_reference


def _everywhere(x: float) -> bool:
    return True


def _positive(x: float) -> bool:
    return x > 0


_REALS = Domain("all reals", _everywhere)
_EXAMPLES = 150  # besides the structured programs (each op form alone, at edges; shared nodes; chains)

# A module as a user writes it: {torch_sin}, {torch_cos}, {factor} and {domain} plant the mistakes.
_TRIG = '''
"""sin and cos, ops of my own."""
import math

from refgrad import apply
from refgrad.ops import Domain, OpSpec

REALS = Domain("all reals", lambda x: True)


def sin_of(x):
    return math.sin(x) if isinstance(x, float) else apply(SIN, x)


def cos_of(x):
    return math.cos(x) if isinstance(x, float) else apply(COS, x)


SIN = OpSpec(
    name="sin", arity=1, params=(), forward=math.sin,
    partials=lambda inputs, output, params: (cos_of(inputs[0]) * {factor},),
    domain={domain}, kinks=(), formula="sin(x)", partial_formulas=("cos(x)",), symbol="sin", torch={torch_sin},
)
COS = OpSpec(
    name="cos", arity=1, params=(), forward=math.cos,
    partials=lambda inputs, output, params: (-sin_of(inputs[0]),),
    domain=REALS, kinks=(), formula="cos(x)", partial_formulas=("-sin(x)",), symbol="cos", torch={torch_cos},
)
OPS = (SIN, COS)
'''


def _module(
    folder: Path,
    name: str,
    *,
    torch: bool = True,
    factor: str = "1.0",
    domain: str = "REALS",
    torch_sin: str | None = None,
) -> str:
    """Write a trig module called ``name`` into ``folder`` (on sys.path) and return its name."""
    sin_name = torch_sin if torch_sin is not None else ('"torch.sin"' if torch else "None")
    source = _TRIG.format(
        factor=factor, domain=domain, torch_sin=sin_name, torch_cos='"torch.cos"' if torch else "None"
    )
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))  # pyright: ignore[reportUnknownMemberType]  # pytest leaves path untyped
    monkeypatch.chdir(tmp_path)
    # verify sets hypothesis's cache folder for the process if unset: keep it here, and unset afterwards.
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path / "hypothesis"))
    return tmp_path


def _card(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    status = main(["verify", *arguments, "--examples", str(_EXAMPLES), "--no-database", "--format", "json"])
    card: dict[str, Any] = json.loads(capsys.readouterr().out)
    return status, card


def _defect_ops(card: dict[str, Any]) -> set[str]:
    findings: list[dict[str, Any]] = card["findings"]
    return {finding["op"] for finding in findings if finding["severity"] == "defect"}


def _checks(card: dict[str, Any], op: str) -> int:
    checks: int = card["ops"][op]["checks"]
    return checks


def test_right_entries_pass_ops_from(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _module(folder, "trig_right")
    status, card = _card(capsys, "--ops-from", name)
    assert status == 0, card["findings"]
    assert card["verdict"] == "pass"
    assert {"sin", "cos"} <= set(card["checked"])
    # Checked against torch's own sin and cos, and finite differences, like a built-in.
    report = verify(RefgradEngine(), examples=_EXAMPLES, extra_ops=load_ops(name, registry))
    assert report.passed
    for op in ("sin", "cos"):
        stats = report.stats[op]
        assert stats.value > 100, stats
        assert stats.gradient > 50, stats
        assert stats.finite_difference > 20, stats


def test_a_partial_off_by_a_relative_1e_6_fails_naming_the_op(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _module(folder, "trig_off", factor="(1.0 + 1e-6)")
    status, card = _card(capsys, "--ops-from", name)
    assert status == 1
    assert _defect_ops(card) == {"sin"}


def test_a_wrong_domain_fails_naming_the_op(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # sin declared for x > 0 only: the oracle would never draw sin(-1), which the forward and torch compute.
    name = _module(folder, "trig_domain", domain='Domain("x > 0", lambda x: x > 0)')
    status, card = _card(capsys, "--ops-from", name)
    assert status == 1
    assert _defect_ops(card) == {"sin"}
    findings: list[dict[str, Any]] = card["findings"]
    (summary,) = [str(f["summary"]) for f in findings if f["kind"] == "wrong-domain"]
    assert summary.startswith(
        "the domain of sin ('x > 0') leaves out points where its forward and torch.sin give a number: (-0.5); "
    )


@pytest.mark.parametrize("op", registry.names)
def test_every_registry_domain_is_where_its_op_is_defined(op: str) -> None:
    assert domain_disagreements(registry[op]) == ()


def test_a_domain_too_wide_is_found() -> None:
    wide = dataclasses.replace(registry["log"], name="mylog", domain=_REALS)
    (sentence,) = domain_disagreements(wide)
    assert sentence.startswith(
        "the domain of mylog ('all reals') takes in points where its forward fails and torch.log is NaN: (-0.5); "
    )


def test_a_forward_that_disagrees_with_its_torch_function_fails_naming_the_op(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _module(folder, "trig_forward", torch_sin='"torch.cos"')
    status, card = _card(capsys, "--ops-from", name)
    assert status == 1
    assert "sin" in _defect_ops(card)


def test_without_torch_the_right_entries_pass_against_finite_differences(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _module(folder, "trig_untorched", torch=False)
    status, card = _card(capsys, "--ops-from", name)
    assert status == 0, card["findings"]
    assert _checks(card, "sin") > 0
    report = verify(RefgradEngine(), examples=_EXAMPLES, extra_ops=load_ops(name, registry))
    assert report.passed
    assert report.stats["sin"].finite_difference > 20, report.stats["sin"]
    # The torch checks through sin and cos are left out, and said so.
    left_out = {reason for reason in report.skip_reasons if NO_TORCH in reason}
    assert left_out, report.skip_reasons
    assert report.stats["sin"].value == 0


def test_without_torch_a_wrong_partial_still_fails_naming_the_op(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _module(folder, "trig_untorched_off", torch=False, factor="(1.0 + 1e-6)")
    status, card = _card(capsys, "--ops-from", name)
    assert status == 1
    assert _defect_ops(card) == {"sin"}


def test_the_counterexample_script_runs_standalone(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _module(folder, "trig_script", factor="(1.0 + 1e-6)")
    status = main(["verify", "--ops-from", name, "--examples", "20", "--no-database"])
    assert status == 1
    out = capsys.readouterr().out
    script = out[out.rindex('"""refgrad oracle') :]
    assert f"from {name} import OPS" in script
    assert "own('sin'" in script
    (folder / "repro.py").write_text(script)
    ran = subprocess.run(
        [sys.executable, "repro.py"], capture_output=True, text=True, cwd=folder, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("engine:")
    assert "\ntorch: " in ran.stdout


def test_ops_from_usage_errors_are_one_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "no_ops.py").write_text("X = 1\n")
    (folder / "builtin_clash.py").write_text("from refgrad.ops import ADD\nOPS = (ADD,)\n")
    cases = {
        "nosuch_module": "cannot import module 'nosuch_module'",
        "no_ops": "has no OPS",
        "builtin_clash": "op 'add' is built in",
    }
    for module, message in cases.items():
        assert main(["verify", "--ops-from", module, "--no-database"]) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert err.count("\n") == 1, err
    name = _module(folder, "trig_engine")
    assert main(["verify", "--ops-from", name, "--engine", "micrograd-compat", "--no-database"]) == 2
    assert "drop --engine micrograd-compat" in capsys.readouterr().err


def test_ops_lists_your_own_ops_after_the_registry(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _module(folder, "trig_table")
    assert main(["ops", "--ops-from", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [*registry.names, "sin", "cos"]
    assert "torch.sin" in lines[-2]


# A toy op with nothing but its entry -------------------------------------------------------


def _square(x: float) -> float:
    return x * x


def _square_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N, ...]:
    (x,) = inputs
    return (2.0 * x,)


SQUARE = OpSpec(
    name="square",
    arity=1,
    params=(),
    forward=_square,
    partials=_square_partials,
    domain=_REALS,
    kinks=(),
    formula="x * x",
    partial_formulas=("2 * x",),
    symbol="square",
    torch="torch.square",
)


def test_a_toy_op_runs_through_every_mode() -> None:
    x = Value(3.0)
    y = apply(SQUARE, x) * x  # x ** 3
    assert y.data == 27.0
    assert y.backward()[x] == 27.0  # reverse mode: 3 x ** 2
    assert jvp(y, [x], [1.0]) == 27.0  # forward mode
    (first,) = grad(y, [x], create_graph=True)
    assert grad(first, [x]) == (18.0,)  # create_graph: 6 x
    # The micrograd surface: the same entry on its nodes, gradients written into .grad.
    m = MicrogradValue(3.0)
    out = apply(SQUARE, m) * m
    assert isinstance(out, MicrogradValue)
    out.backward()
    assert m.grad == 27.0
    # The op table.
    rows = op_table((SQUARE,))
    assert rows[-1][:6] == ("square", "1", "-", "x * x", "2 * x", "torch.square")


def test_a_toy_op_goes_through_the_oracle_at_both_orders() -> None:
    report = verify(RefgradEngine(), examples=60, extra_ops=(SQUARE,), order=2)
    assert report.passed, format_report(report)
    stats = report.stats["square"]
    assert stats.gradient > 0
    assert stats.second_order > 0
    # The table is the registry's again once the run is over.
    assert "square" not in current_ops


def test_a_wrong_toy_rule_is_caught_through_extra_ops() -> None:
    def wrong(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N, ...]:
        return (2.0 * inputs[0] + 1e-3,)

    bad = OpSpec(
        name="square",
        arity=1,
        params=(),
        forward=_square,
        partials=wrong,
        domain=_REALS,
        kinks=(),
        formula="x * x",
        partial_formulas=("2 * x",),
        symbol="square",
        torch=None,
    )
    report = verify(RefgradEngine(), examples=30, extra_ops=(bad,))
    assert not report.passed
    assert {finding.op for finding in report.defects} == {"square"}


def test_extra_ops_are_checked() -> None:
    with pytest.raises(TypeError, match=r"not one OpSpec: pass \(SQUARE,\)"):
        extra_ops_argument(SQUARE, registry)
    with pytest.raises(TypeError, match="must hold OpSpec entries, got int"):
        extra_ops_argument((SQUARE, 3), registry)
    with pytest.raises(ValueError, match="two ops are named 'square'"):
        extra_ops_argument((SQUARE, SQUARE), registry)
    with pytest.raises(ValueError, match="op 'mul' is built in"):
        extra_ops_argument((registry["mul"],), registry)
    untorched = dataclasses.replace(SQUARE, torch=None)
    with pytest.raises(ValueError, match="order 2 needs torch's second derivatives of every op; square"):
        verify(RefgradEngine(), examples=1, extra_ops=(untorched,), order=2)
    misnamed = dataclasses.replace(SQUARE, torch="torch.nosuch")
    with pytest.raises(ValueError, match=r"op 'square': torch='torch\.nosuch' names no torch function"):
        verify(RefgradEngine(), examples=1, extra_ops=(misnamed,))


def test_ops_of_your_own_need_refgrads_engine() -> None:
    from refgrad.oracle.engines import load_engine

    with pytest.raises(ValueError, match="ops of your own \\(square\\) are checked on refgrad's engine"):
        verify(load_engine("micrograd-compat"), examples=1, extra_ops=(SQUARE,))


def test_run_verify_refuses_a_worker_for_ops_from(folder: Path) -> None:
    import io

    name = _module(folder, "trig_worker")
    err = io.StringIO()
    assert run_verify("refgrad", ops_from=name, examples=1, seed=0, ops=None, isolate=True, err=err) == 2
    assert "drop --isolate" in err.getvalue()


def test_load_ops_reads_the_modules_ops(folder: Path) -> None:
    name = _module(folder, "trig_load")
    assert [spec.name for spec in load_ops(name, registry)] == ["sin", "cos"]
    (folder / "empty_ops.py").write_text("OPS = ()\n")
    with pytest.raises(ValueError, match=r"empty_ops\.OPS holds no ops"):
        load_ops("empty_ops", registry)


# What periodic ops taught the references ---------------------------------------------------


def _trig_ops() -> tuple[OpSpec, ...]:
    def sin_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N, ...]:
        x = inputs[0]
        assert isinstance(x, float)
        return (math.cos(x),)

    sin = OpSpec(
        name="sin",
        arity=1,
        params=(),
        forward=math.sin,
        partials=sin_partials,
        domain=_REALS,
        kinks=(),
        formula="sin(x)",
        partial_formulas=("cos(x)",),
        symbol="sin",
        torch="torch.sin",
    )
    return (sin,)


def test_finite_differences_that_alias_a_period_are_not_taken_as_converged() -> None:
    """x + sin(x) at x = 5.9e16: every step (1e11 down to 1e5) samples sin's period at random.

    The quotients can still pass the convergence test, at the slope of x alone (1.0), where the
    derivative is 1 + cos(x); the stencil's linear-response check refuses them.
    """
    with using_ops(_trig_ops()):
        program = Program((-5.91544542899274e16,), (Step("sin", (Ref(0),)), Step("add", (Ref(0), Ref(1)))))
        reference = torch_reference(program)
        estimate = finite_difference(program, 0, output_error_bound(program, reference))
        assert isinstance(estimate, FiniteDifferenceSkip)
        assert estimate.reason == "not converging"
        # At a moderate point the same program is estimated, and right.
        moderate = Program((0.7,), program.steps)
        found = finite_difference(moderate, 0, output_error_bound(moderate, torch_reference(moderate)))
        assert not isinstance(found, FiniteDifferenceSkip)
        assert found.estimate == pytest.approx(1.0 + math.cos(0.7), rel=1e-9)


def test_a_node_beyond_the_error_models_first_order_is_found_and_its_checks_skipped() -> None:
    """sin of exp(35): the operand's sampled roundings (1e-13 relative, 1e2 absolute) wrap around its period."""
    with using_ops(_trig_ops()):
        program = Program((35.0,), (Step("exp", (Ref(0),)), Step("sin", (Ref(1),))))
        reference = torch_reference(program)
        assert reference.beyond_first_order == (2,)
        report_program = Program((0.5,), program.steps)
        assert torch_reference(report_program).beyond_first_order == ()
        from refgrad.oracle.compare import check_program

        outcome = check_program(program, RefgradEngine())
        assert outcome.passed
        assert {skip.kind for skip in outcome.skips if skip.reason == BEYOND_FIRST_ORDER} >= {"value", "gradient"}


def test_a_run_never_reuses_another_runs_op_of_the_same_name() -> None:
    """The structured programs and their references are cached per process: per entry, not per name."""
    from refgrad.oracle import diagnosis
    from refgrad.oracle.campaigns import edge_programs

    (right,) = _trig_ops()
    narrow = dataclasses.replace(right, domain=Domain("x > 0", _positive))
    wrong = dataclasses.replace(right, torch="torch.cos")
    for spec, negatives, value in ((right, True, math.sin(0.5)), (narrow, False, None), (wrong, True, math.cos(0.5))):
        with using_ops((spec,)):
            points = [pattern.program.inputs[0] for pattern in edge_programs("sin", ("node",))]
            assert any(x < 0 for x in points) is negatives, points
            if value is not None:
                program = Program((0.5,), (Step("sin", (Ref(0),)),))
                known = diagnosis._references(program, False, current_ops.key, "torch")  # pyright: ignore[reportPrivateUsage]
                assert known.primary.values[1] == pytest.approx(value, rel=1e-15)


def test_without_torch_a_grossly_wrong_partial_fails_naming_the_op() -> None:
    """The references never trust the partials under test: finite differences still judge them."""
    for factor in (-1.0, 1.5):

        def wrong(inputs: tuple[N, ...], output: N, params: Params, factor: float = factor) -> tuple[N, ...]:
            return (factor * 2.0 * inputs[0],)

        bad = dataclasses.replace(SQUARE, partials=wrong, torch=None)
        report = verify(RefgradEngine(), examples=20, extra_ops=(bad,))
        assert {finding.op for finding in report.defects} == {"square"}, format_report(report)
        assert report.stats["square"].finite_difference > 0


def test_a_report_read_after_the_run_still_spells_your_op() -> None:
    def tripled(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N, ...]:
        return (3.0 * inputs[0],)

    bad = dataclasses.replace(SQUARE, partials=tripled, torch=None)
    report = verify(RefgradEngine(), examples=20, extra_ops=(bad,))
    text = format_report(report)  # the run's op table is gone by now
    assert "own('square', " in text
    assert 'registry["square"]' not in text


def test_entry_mistakes_found_before_the_run_are_one_line_usage_errors(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "from refgrad.ops import Domain\nimport trig_base\nimport dataclasses\nOPS = ({},)\n"
    _module(folder, "trig_base")
    cases = {
        "bad_torch_name": ("dataclasses.replace(trig_base.SIN, torch='torch.nosuch')", ["--order", "1"], "names no"),
        "wrong_arity": ("dataclasses.replace(trig_base.SIN, torch='torch.atan2')", ["--order", "1"], "fails:"),
        "untorched_order_2": ("dataclasses.replace(trig_base.SIN, torch=None)", ["--order", "2"], "order 2 needs"),
    }
    for module, (entry, options, message) in cases.items():
        (folder / f"{module}.py").write_text(source.format(entry))
        assert main(["verify", "--ops-from", module, *options, "--no-database"]) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert err.startswith("refgrad: error: "), err
        assert err.count("\n") == 1, err


def test_a_domain_that_raises_is_a_wrong_domain_finding() -> None:
    def strict_domain(x: float) -> bool:
        return math.sqrt(x) >= 0.0  # raises for x < 0

    raising = dataclasses.replace(SQUARE, domain=Domain("x >= 0", strict_domain))
    (sentence,) = domain_disagreements(raising)
    assert sentence.startswith("the domain of square ('x >= 0') raises at (-0.5) instead of answering: ValueError")


def test_finite_differences_still_take_a_cube_at_zero() -> None:
    """The resolution check removes the h**3 term as Richardson does: (x * x) * x at 0 is resolved (slope 0)."""
    program = Program((0.0,), (Step("mul", (Ref(0), Ref(0))), Step("mul", (Ref(1), Ref(0)))))
    estimate = finite_difference(program, 0, output_error_bound(program, torch_reference(program)))
    assert not isinstance(estimate, FiniteDifferenceSkip)
    assert abs(estimate.estimate) <= estimate.error_bound
