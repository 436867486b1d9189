"""The oracle: random expression graphs cross-checked against PyTorch (float64) and finite differences.

Needs the ``oracle`` extra (torch and hypothesis). The pieces:

* :mod:`~refgrad.oracle.program`: :class:`Program`, the typed, frozen,
  serializable graph (JSON, and a standalone script for engine and torch);
* :mod:`~refgrad.oracle.strategies`: :func:`programs`, public hypothesis
  strategies over every registry op;
* :mod:`~refgrad.oracle.torch_reference` and
  :mod:`~refgrad.oracle.finite_differences`: the two references and their
  error models;
* :mod:`~refgrad.oracle.engines`: the :class:`Engine` protocol, the optional
  :class:`SecondOrderEngine` and :class:`ForwardModeEngine` capabilities, and
  adapters for refgrad, ``refgrad.micrograd`` and any micrograd-style class;
* :mod:`~refgrad.oracle.compare`: :func:`check_program`, every check for one
  program: those of :mod:`~refgrad.oracle.first_order` (domain, values, gradients,
  finite differences) and :mod:`~refgrad.oracle.higher_order` (forward mode, the
  Hessian), recorded as :mod:`~refgrad.oracle.checks` (:class:`Check`, :class:`Skip`,
  :class:`Outcome`);
* :mod:`~refgrad.oracle.optable` and :mod:`~refgrad.oracle.entries`: the ops a run draws
  (the registry's, and yours: :func:`using_ops`, ``verify(..., extra_ops=...)``) and the check
  of an entry's declared domain;
* :mod:`~refgrad.oracle.findings`: the catalogue of finding kinds (defects and
  warnings) and :class:`Finding`;
* :mod:`~refgrad.oracle.campaigns` and :mod:`~refgrad.oracle.diagnosis`: the
  structured programs run first (each op alone, at kinks and edges, shared
  nodes, chains) and how failures become findings;
* :mod:`~refgrad.oracle.runner`: :func:`verify`, a seeded run with per-op
  statistics and every finding, each with a small counterexample;
* :mod:`~refgrad.oracle.report`: the card ``python -m refgrad verify`` prints
  (text, JUnit XML), and :func:`check_engine`, one call for a test suite;
* :mod:`~refgrad.oracle.page`: the same card as one HTML page, each
  counterexample's graph drawn (:func:`format_html`, :func:`write_html`);
* :mod:`~refgrad.oracle.worker`: :class:`IsolatedEngine`, an engine in a worker
  process with a time limit per program, so that no engine can crash or hang the oracle;
* :mod:`~refgrad.oracle.database`: :class:`ExampleDatabase`, where ``verify``
  keeps its counterexamples (as program JSON) and replays them from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from refgrad.oracle.checks import Check, Outcome, Skip
from refgrad.oracle.compare import check_program
from refgrad.oracle.database import ExampleDatabase, read_program_file, read_program_file_and_order
from refgrad.oracle.engines import (
    Engine,
    EngineFailure,
    EngineRun,
    EngineSpecError,
    ForwardModeEngine,
    ForwardModeRun,
    MicrogradStyleEngine,
    RefgradEngine,
    SecondOrderEngine,
    SecondOrderRun,
    load_engine,
    probe,
)
from refgrad.oracle.exact_reference import ExactResult
from refgrad.oracle.findings import KINDS, Finding, FindingKind
from refgrad.oracle.finite_differences import FiniteDifference, FiniteDifferenceSkip, finite_difference
from refgrad.oracle.optable import op_table, using_ops
from refgrad.oracle.page import format_html, write_html
from refgrad.oracle.program import Const, Form, Program, Ref, Step, forms_of
from refgrad.oracle.protocol import PROTOCOL_VERSION, AdapterError, CommandEngine, protocol_check
from refgrad.oracle.references import torch_installed, using_references
from refgrad.oracle.report import check_engine, format_junit, format_report
from refgrad.oracle.runner import OpStats, VerificationReport, verify
from refgrad.oracle.strategies import all_forms, constants, exponents, input_values, programs
from refgrad.oracle.worker import IsolatedEngine

# The torch reference's names, where torch is installed (importing it imports torch); without torch
# the exact reference checks alone (refgrad.oracle.references) and these names say what they need.
if TYPE_CHECKING or torch_installed():
    from refgrad.oracle.torch_reference import (
        TORCH_REFERENCES,
        TorchReference,
        TorchResult,
        torch_jvp,
        torch_reference,
    )

_TORCH_NAMES: Final = frozenset({"TORCH_REFERENCES", "TorchReference", "TorchResult", "torch_jvp", "torch_reference"})


def __getattr__(name: str) -> object:
    """The torch reference's names where torch is not installed: an error saying so."""
    if name in _TORCH_NAMES:
        hint = "pip install 'refgrad[oracle]'"
        raise AttributeError(f"refgrad.oracle.{name} needs torch, which is not installed: {hint}")
    raise AttributeError(f"module 'refgrad.oracle' has no attribute {name!r}")


__all__ = [
    "KINDS",
    "PROTOCOL_VERSION",
    "TORCH_REFERENCES",
    "AdapterError",
    "Check",
    "CommandEngine",
    "Const",
    "Engine",
    "EngineFailure",
    "EngineRun",
    "EngineSpecError",
    "ExactResult",
    "ExampleDatabase",
    "Finding",
    "FindingKind",
    "FiniteDifference",
    "FiniteDifferenceSkip",
    "Form",
    "ForwardModeEngine",
    "ForwardModeRun",
    "IsolatedEngine",
    "MicrogradStyleEngine",
    "OpStats",
    "Outcome",
    "Program",
    "Ref",
    "RefgradEngine",
    "SecondOrderEngine",
    "SecondOrderRun",
    "Skip",
    "Step",
    "TorchReference",
    "TorchResult",
    "VerificationReport",
    "all_forms",
    "check_engine",
    "check_program",
    "constants",
    "exponents",
    "finite_difference",
    "format_html",
    "format_junit",
    "format_report",
    "forms_of",
    "input_values",
    "load_engine",
    "op_table",
    "probe",
    "programs",
    "protocol_check",
    "read_program_file",
    "read_program_file_and_order",
    "torch_jvp",
    "torch_reference",
    "using_ops",
    "using_references",
    "verify",
    "write_html",
]
