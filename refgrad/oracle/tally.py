"""What a run counted: per op, per kind of check, per reference; the sums that merging runs adds up.

A run's random programs are checked in blocks (:mod:`refgrad.oracle.blocks`), each block with a
:class:`Tally` of its own, in this process or in a worker; the run's tally is their sum
(:meth:`Tally.merge`), so the counts do not depend on how many processes checked the blocks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from refgrad.oracle.checks import Check, CheckKind, Outcome

__all__ = ["WELL_CONDITIONED_ULPS", "OpStats", "Tally"]


@dataclass(slots=True)
class OpStats:
    """Counts for one op over a run: graphs using it, checks exercising it by kind, skips, worst error/tolerance."""

    graphs: int = 0
    value: int = 0
    gradient: int = 0
    finite_difference: int = 0
    domain: int = 0
    forward_mode: int = 0
    """Forward-mode checks: against torch's forward mode and against the engine's own reverse mode."""
    second_order: int = 0
    """Hessian entries against torch's double backward (and second-order domain agreements)."""
    second_order_fd: int = 0
    """Hessian entries against finite differences of the engine's own gradients."""
    skipped: int = 0
    worst: float = 0.0
    value_ulps: float | None = None
    """The worst error, in ulps of the exact result, of a value the op alone computed (None: none checked exactly).

    Among well-conditioned checks only: those whose tolerance is at most :data:`WELL_CONDITIONED_ULPS`.
    """
    gradient_ulps: float | None = None
    """The worst error, in ulps of the exact result, of a gradient through the op alone (None: none checked exactly)."""

    def note_ulps(self, check: Check) -> None:
        """Keep ``check``'s error in ulps if it is against the exact reference and the worst of its kind so far."""
        ulps = check.exact_ulps
        # Only well-conditioned numbers say how accurate the op is: where the bound allows more (1 - t * t
        # at t = tanh(20) rounds to 0, 1e15 ulps of 1.7e-17 off), the error is the problem's, not the op's.
        if ulps is None or (ulps > 0.0 and ulps > WELL_CONDITIONED_ULPS * check.ratio):
            return
        if check.kind == "value":
            self.value_ulps = ulps if self.value_ulps is None else max(self.value_ulps, ulps)
        elif check.kind == "gradient":
            self.gradient_ulps = ulps if self.gradient_ulps is None else max(self.gradient_ulps, ulps)

    def merge(self, other: OpStats) -> None:
        """Add ``other``'s counts to these; keep the worse of each worst."""
        self.graphs += other.graphs
        self.value += other.value
        self.gradient += other.gradient
        self.finite_difference += other.finite_difference
        self.domain += other.domain
        self.forward_mode += other.forward_mode
        self.second_order += other.second_order
        self.second_order_fd += other.second_order_fd
        self.skipped += other.skipped
        self.worst = max(self.worst, other.worst)
        self.value_ulps = _worse(self.value_ulps, other.value_ulps)
        self.gradient_ulps = _worse(self.gradient_ulps, other.gradient_ulps)

    def counts(self) -> dict[str, int]:
        """The checks by kind, and the skips, as JSON writes them."""
        return {
            "value": self.value,
            "gradient": self.gradient,
            "finite_difference": self.finite_difference,
            "domain": self.domain,
            "forward_mode": self.forward_mode,
            "second_order": self.second_order,
            "second_order_fd": self.second_order_fd,
            "skipped": self.skipped,
        }

    @property
    def checks(self) -> int:
        """All checks exercising the op."""
        return (
            self.value
            + self.gradient
            + self.finite_difference
            + self.domain
            + self.forward_mode
            + self.second_order
            + self.second_order_fd
        )


def _worse(one: float | None, other: float | None) -> float | None:
    """The larger of two worst errors, where None is "none measured"."""
    if one is None:
        return other
    return one if other is None else max(one, other)


WELL_CONDITIONED_ULPS: Final = 64.0
"""A check against the exact reference whose tolerance is at most this many ulps counts towards an op's ulps."""


def _count(stats: OpStats, kind: CheckKind) -> None:
    if kind == "value":
        stats.value += 1
    elif kind == "gradient":
        stats.gradient += 1
    elif kind == "finite-difference":
        stats.finite_difference += 1
    elif kind == "domain":
        stats.domain += 1
    elif kind in ("forward-mode", "forward-vs-reverse"):
        stats.forward_mode += 1
    elif kind == "second-order":
        stats.second_order += 1
    else:
        stats.second_order_fd += 1


@dataclass(slots=True)
class Tally:
    """Counts over some of a run's programs: per op, checks by kind and reference, skips, graph sizes."""

    stats: dict[str, OpStats]
    skip_reasons: Counter[str] = field(default_factory=Counter[str])
    kinds: Counter[str] = field(default_factory=Counter[str])
    references: Counter[str] = field(default_factory=Counter[str])
    graphs: int = 0
    structured: int = 0
    nodes: int = 0
    deepest: int = 0
    out_of_domain: int = 0

    def add(self, outcome: Outcome, *, structured: bool = False) -> None:
        program = outcome.program
        if structured:
            self.structured += 1
        else:
            self.graphs += 1
            self.nodes += program.node_count
            self.deepest = max(self.deepest, program.depth())
        for op in program.ops():
            self.stats[op].graphs += 1
        for check in outcome.checks:
            self.kinds[check.kind] += 1
            if check.reference:
                self.references[check.reference] += 1
            if check.kind == "domain":
                self.out_of_domain += 1
            if len(check.ops) == 1 and check.passed:
                # Ulps are told per op where the op alone made the number; disagreements are findings.
                self.stats[next(iter(check.ops))].note_ulps(check)
            for op in check.ops:
                stats = self.stats[op]
                _count(stats, check.kind)
                if check.passed:
                    # The closest call among agreeing checks; disagreements are findings, told apart there.
                    stats.worst = max(stats.worst, check.ratio)
        for skip in outcome.skips:
            self.skip_reasons[f"{skip.kind}: {skip.reason}"] += 1
            for op in skip.ops:
                self.stats[op].skipped += 1

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these (ops only ``other`` has are added after these)."""
        for op, stats in other.stats.items():
            self.stats.setdefault(op, OpStats()).merge(stats)
        self.skip_reasons.update(other.skip_reasons)
        self.kinds.update(other.kinds)
        self.references.update(other.references)
        self.graphs += other.graphs
        self.structured += other.structured
        self.nodes += other.nodes
        self.deepest = max(self.deepest, other.deepest)
        self.out_of_domain += other.out_of_domain
