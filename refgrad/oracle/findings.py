"""The catalogue of what a verification run can find, and the findings themselves.

Each kind of finding is one named entry here, with its severity and the words a report uses
for it; the rest of the oracle refers to kinds by these entries, never by comparing strings.

* A **defect** is a wrong answer or a broken method at ordinary inputs: the run fails.
* A **warning** says how far a passing run can be trusted (little was checked, say) or where
  the engine is fragile; it does not fail the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from refgrad.oracle.program import Program

__all__ = ["BROKEN_OP", "DISAGREEMENT", "KINDS", "LITTLE_CHECKED", "Finding", "FindingKind", "Severity"]

Severity = Literal["defect", "warning"]
"""``"defect"``: the run fails; ``"warning"``: reported, the run still passes."""


@dataclass(frozen=True, slots=True)
class FindingKind:
    """One kind of finding: its name (in JSON and tests), severity, what it means and what to do about it."""

    name: str
    severity: Severity
    meaning: str
    advice: str


BROKEN_OP: Final = FindingKind(
    "broken-op",
    "defect",
    "the op exists but fails on ordinary inputs (an exception from inside it, or no number in the result)",
    "run the reproduce script and read the traceback: the method is there, so the engine means to support the op",
)
DISAGREEMENT: Final = FindingKind(
    "disagreement",
    "defect",
    "a value or gradient disagrees with torch (float64) and finite differences",
    "the shrunk program below shows it; its script prints the engine's numbers beside torch's",
)
LITTLE_CHECKED: Final = FindingKind(
    "little-checked",
    "warning",
    "fewer than half of the op forms could be checked: a pass says nothing of the rest",
    "add the missing methods or reflected operators, or name the ops to check with --ops",
)

KINDS: Final[Mapping[str, FindingKind]] = {kind.name: kind for kind in (BROKEN_OP, DISAGREEMENT, LITTLE_CHECKED)}
"""Every kind, by name."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a run found: its kind, the op and operand form it concerns, a one-line summary, a program showing it.

    ``op`` is a registry op name, or None for a finding about the engine or the
    run as a whole; ``form`` is the op's operand form as reports write it
    (``"pow (x, c)"``), or None.
    """

    kind: FindingKind
    op: str | None
    form: str | None
    summary: str
    program: Program | None = None
    script: str | None = None
    """A standalone script running ``program`` on the engine and on torch, when there is a program."""

    @property
    def severity(self) -> Severity:
        """The kind's severity."""
        return self.kind.severity
