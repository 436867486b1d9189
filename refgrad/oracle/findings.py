"""The catalogue of what a verification run can find, and the findings themselves.

Each kind of finding is one named entry here, with its severity and the words a report uses
for it; the rest of the oracle refers to kinds by these entries, never by comparing strings.

* A **defect** is a wrong answer or a broken method at ordinary inputs (magnitudes from about
  1e-4 to 1e4, no operand at a kink): the run fails.
* A **warning** says how far a passing run can be trusted (little was checked, say) or where
  the engine is fragile: a rule right at ordinary inputs whose formula overflows, divides by zero
  or loses precision at edge inputs, another convention at a kink, a recursive backward on a deep
  graph, an accuracy a few dozen ulps off. It fails the run only under ``strict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from refgrad.oracle.checks import Outcome
from refgrad.oracle.program import Program

__all__ = [
    "ACCUMULATION",
    "ACCURACY",
    "BROKEN_OP",
    "COMPOSITION",
    "DEEP_GRAPH",
    "DISAGREEMENT",
    "FRAGILE",
    "KINDS",
    "KINK_CONVENTION",
    "LITTLE_CHECKED",
    "NONDETERMINISTIC",
    "WRONG_DERIVATIVE",
    "WRONG_DOMAIN",
    "WRONG_VALUE",
    "Finding",
    "FindingKind",
    "Severity",
]

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
WRONG_VALUE: Final = FindingKind(
    "wrong-value",
    "defect",
    "the op's forward computes the wrong number at ordinary inputs",
    "compare the method with the formula shown; an operand order swapped (c - x for x - c) looks like this",
)
WRONG_DERIVATIVE: Final = FindingKind(
    "wrong-derivative",
    "defect",
    "the op's local derivative in one operand is wrong at ordinary inputs (its value is right)",
    "compare the rule in the op's backward with the registry's formula shown",
)
WRONG_DOMAIN: Final = FindingKind(
    "wrong-domain",
    "defect",
    "an op entry's declared domain is not where the op is defined: the oracle draws only inside it, and expects "
    "a domain signal outside it",
    "make the entry's Domain.contains true exactly where the forward (and the torch function it names) gives a "
    "number, the points shown included",
)
COMPOSITION: Final = FindingKind(
    "composition",
    "defect",
    "each op is right alone, but gradients through several nodes are wrong",
    "look at how backward() orders the nodes (reverse topological order) and accumulates (+=) into a node "
    "used more than once",
)
DISAGREEMENT: Final = COMPOSITION
"""The name this kind had before ops were checked alone first: a random program's disagreement."""
NONDETERMINISTIC: Final = FindingKind(
    "nondeterministic",
    "defect",
    "the same program gave different results on different runs",
    "look for iteration over a set (or dict of ids) in backward(): its order changes from run to run",
)
FRAGILE: Final = FindingKind(
    "fragile",
    "warning",
    "the rule is right at ordinary inputs, but its formula fails at edge inputs where the result is finite",
    "rewrite the formula so that no intermediate overflows or divides by zero there (math.tanh for a tanh "
    "from exp, 0 for the derivative of x ** 0, a case for each sign in a sigmoid)",
)
KINK_CONVENTION: Final = FindingKind(
    "kink-convention",
    "warning",
    "at a point where the op is not differentiable the engine uses another derivative than PyTorch's convention",
    "any value there is defensible; PyTorch's is shown, and matching it makes engines comparable",
)
DEEP_GRAPH: Final = FindingKind(
    "deep-graph",
    "warning",
    "backward() fails on a deep graph (a recursive topological sort stops at Python's recursion limit)",
    "walk the graph with an explicit stack instead of recursion",
)
ACCURACY: Final = FindingKind(
    "accuracy",
    "warning",
    "a value or gradient is a few dozen ulps off at ordinary inputs: a less accurate but legitimate formula",
    "use the math module's function for the op (math.exp, not math.e ** x)",
)
ACCUMULATION: Final = FindingKind(
    "accumulation",
    "warning",
    "backward() called more than once on a graph's nodes does not add exactly one pass's gradients to the "
    "inputs each time, as torch's does (twice, after zero_grad(), or through a node a second graph reuses)",
    "a node's gradient left from an earlier pass is passed on again: set the gradient of every node that is not "
    "a leaf to 0 before the pass (leaves keep adding up), or sum the pass's gradients apart and add them at the end",
)
LITTLE_CHECKED: Final = FindingKind(
    "little-checked",
    "warning",
    "fewer than half of the op forms could be checked: a pass says nothing of the rest",
    "add the missing methods or reflected operators, or name the ops to check with --ops",
)

KINDS: Final[Mapping[str, FindingKind]] = {
    kind.name: kind
    for kind in (
        BROKEN_OP,
        WRONG_VALUE,
        WRONG_DERIVATIVE,
        WRONG_DOMAIN,
        COMPOSITION,
        NONDETERMINISTIC,
        FRAGILE,
        KINK_CONVENTION,
        DEEP_GRAPH,
        ACCURACY,
        ACCUMULATION,
        LITTLE_CHECKED,
    )
}
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
    outcome: Outcome | None = None
    """Every check made on ``program``, where the finding comes from comparing the engine's run."""
    details: tuple[str, ...] = ()
    """What disagreed, a line each, for a finding read back from JSON (which keeps no ``outcome``)."""

    @property
    def severity(self) -> Severity:
        """The kind's severity."""
        return self.kind.severity

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: severity, kind, op, form, summary, program (its JSON form, or None), meaning and advice."""
        return {
            "severity": self.severity,
            "kind": self.kind.name,
            "op": self.op,
            "form": self.form,
            "summary": self.summary,
            "program": None if self.program is None else self.program.to_dict(),
            "meaning": self.kind.meaning,
            "advice": self.kind.advice,
            "disagreements": list(self.disagreements()),
            "script": self.script,
        }

    def disagreements(self) -> tuple[str, ...]:
        """What disagreed on the program, a line each (the engine's failure where nothing was compared)."""
        if self.outcome is None:
            return self.details
        lines = [check.detail for check in self.outcome.failures]
        failure = self.outcome.engine_failure
        if failure is not None and not lines:
            lines.append(f"the engine: {failure.describe()}")
        return tuple(lines)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Finding:
        """A finding as :meth:`to_dict` wrote it; ``ValueError`` naming what is wrong."""
        kind = KINDS.get(str(data.get("kind")))
        if kind is None:
            raise ValueError(f"a finding of unknown kind {data.get('kind')!r:.80}")
        op, form, summary, script = data.get("op"), data.get("form"), data.get("summary"), data.get("script")
        details = data.get("disagreements", [])
        if (
            not isinstance(summary, str)
            or not (op is None or isinstance(op, str))
            or not (form is None or isinstance(form, str))
            or not (script is None or isinstance(script, str))
            or not isinstance(details, list)
            or not all(isinstance(line, str) for line in cast("list[object]", details))
        ):
            raise ValueError(f"a {kind.name} finding whose op, form, summary, script or disagreements are malformed")
        program = data.get("program")
        return cls(
            kind,
            op,
            form,
            summary,
            None if program is None else Program.from_dict(program),
            script,
            details=tuple(cast("list[str]", details)),
        )
