"""A campaign's random programs in blocks: the unit ``verify -j`` spreads over processes and ``--shard`` over machines.

A campaign (a seed and a number of programs) is cut into blocks of :data:`BLOCK_SIZE` programs,
block ``i`` drawn by its own hypothesis run seeded from ``(seed, i)``. The cut depends on the
campaign alone, never on how many processes or machines check it, so ``-j 1``, ``-j 8`` and
eight shards merged check the same programs and count the same checks.

A block is checked without stopping or shrinking (:func:`check_block`): every program is tallied,
failures at ordinary inputs are kept (the earliest of each set of ops, see :func:`_keep_failure`)
and edge failures set aside, smallest first. The run that owns the blocks diagnoses what they
kept, in block order, as they come (:mod:`refgrad.oracle.runner`): it replays a failure's block
with shrinking on, which reaches the same program, since a block draws the same programs every time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from hypothesis import Phase, Verbosity, given, seed, settings

from refgrad.oracle.checks import Outcome
from refgrad.oracle.compare import checked
from refgrad.oracle.diagnosis import edge_failure
from refgrad.oracle.engines import Engine
from refgrad.oracle.program import Form, Program
from refgrad.oracle.strategies import OutOfDomain, programs
from refgrad.oracle.tally import OpStats, Tally

__all__ = [
    "BLOCK_SIZE",
    "Block",
    "BlockResult",
    "Drawing",
    "Shard",
    "campaign_blocks",
    "check_block",
    "hypothesis_run",
    "shard_argument",
]

BLOCK_SIZE: Final = 250
"""Random programs per block: small enough to balance a few workers, large enough to let hypothesis vary them."""


@dataclass(frozen=True, slots=True)
class Block:
    """Programs ``index * BLOCK_SIZE`` to ``index * BLOCK_SIZE + size - 1`` of a campaign, drawn from ``seed``."""

    index: int
    size: int
    seed: int


def _block_seed(seed_value: int, index: int) -> int:
    """Block ``index``'s hypothesis seed: a hash of the campaign's seed and the index (no two blocks share one)."""
    digest = hashlib.sha256(f"refgrad verify block {seed_value} {index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def campaign_blocks(examples: int, seed_value: int) -> tuple[Block, ...]:
    """The blocks of a campaign of ``examples`` random programs (the last may be smaller)."""
    count = -(-examples // BLOCK_SIZE)
    return tuple(
        Block(index, min(BLOCK_SIZE, examples - index * BLOCK_SIZE), _block_seed(seed_value, index))
        for index in range(count)
    )


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (both from 1): the blocks whose index is ``index - 1`` modulo ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, block: Block) -> bool:
        """Whether ``block`` is this shard's."""
        return block.index % self.count == self.index - 1


MAX_SHARDS: Final = 100_000
"""More shards than this is a typo, not a campaign."""


def shard_argument(value: object, name: str = "shard") -> Shard:
    """``"K/N"`` (or a :class:`Shard`) checked: ``1 <= K <= N``; ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, Shard):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string K/N, got {type(value).__name__}")
    index_text, slash, count_text = value.strip().partition("/")
    if not slash or not index_text.isdigit() or not count_text.isdigit():
        raise ValueError(f"{name} must be K/N with whole numbers, 1 <= K <= N (e.g. 2/4); got {value!r:.80}")
    index, count = int(index_text), int(count_text)
    if not 1 <= index <= count <= MAX_SHARDS:
        raise ValueError(f"{name} must be K/N with 1 <= K <= N <= {MAX_SHARDS}; got {value!r:.80}")
    return Shard(index, count)


@dataclass(frozen=True, slots=True)
class Drawing:
    """What every block of a run draws and how it checks: the same in this process and in every worker."""

    forms: tuple[tuple[str, Form], ...]
    max_steps: int
    out_of_domain: OutOfDomain
    order: Literal[1, 2]
    ops: tuple[str, ...]
    """The ops the run counts, in the card's order (each block's tally starts with these)."""


@dataclass(slots=True)
class BlockResult:
    """What checking one block found: its counts, its failures kept for diagnosis, and whether it stopped early."""

    block: Block
    tally: Tally
    failures: list[tuple[int, Program]] = field(default_factory=list[tuple[int, Program]])
    """Failures at ordinary inputs, by position in the block; only the earliest of each set of ops (see below)."""
    edges: dict[frozenset[str], Outcome] = field(default_factory=dict[frozenset[str], Outcome])
    """The smallest edge failure for each set of ops (the earliest of equal size)."""
    stopped: Outcome | None = None
    """The engine hung or its process died here: the rest of the block (and of the run) was not checked."""
    seconds: float = 0.0


def _keep_failure(failures: list[tuple[int, Program]], position: int, program: Program) -> None:
    """Keep a failure unless an earlier one's ops are a subset of its ops.

    Diagnosis wants the earliest failure whose ops avoid the ops already blamed; such an earlier
    failure avoids them whenever this one does, so this one would never be chosen.
    """
    ops = program.ops()
    if not any(kept.ops() <= ops for _, kept in failures):
        failures.append((position, program))


def _keep_smallest(edges: dict[frozenset[str], Outcome], outcome: Outcome) -> None:
    """Keep ``outcome`` as its set of ops' edge failure unless one kept already is as small."""
    ops = outcome.program.ops()
    kept = edges.get(ops)
    if kept is None or outcome.program.node_count < kept.program.node_count:
        edges[ops] = outcome


def hypothesis_run(
    drawing: Drawing, block: Block, test: Callable[[Program], None], *, shrink: bool
) -> Callable[[], None]:
    """Block ``block``'s hypothesis run of ``test`` (shrinking a failure if ``shrink``): the same programs each time."""
    phases = (Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
    strategy = programs(forms=drawing.forms, max_steps=drawing.max_steps, out_of_domain=drawing.out_of_domain)
    return settings(
        max_examples=block.size,
        database=None,
        deadline=None,
        phases=phases,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=(),
    )(seed(block.seed)(given(strategy)(test)))


def check_block(
    engine: Engine, drawing: Drawing, block: Block, progress: Callable[[], None] | None = None
) -> BlockResult:
    """Check every program of ``block`` on ``engine``: tallied, failures kept, none shrunk.

    Only a hang or a crash of the engine's process stops the block (each would cost a time limit).
    ``progress`` is called after each program.
    """
    result = BlockResult(block, Tally({op: OpStats() for op in drawing.ops}))
    position = 0
    started = time.perf_counter()

    def test(program: Program) -> None:
        nonlocal position
        if result.stopped is not None:
            return
        outcome = checked(program, engine, order=drawing.order)
        result.tally.add(outcome)
        here, position = position, position + 1
        if progress is not None:
            progress()
        if outcome.passed:
            return
        if edge_failure(outcome):
            # Perhaps a fragile formula, not a wrong rule: reduced and diagnosed after the run.
            _keep_smallest(result.edges, outcome)
            return
        _keep_failure(result.failures, here, program)
        failure = outcome.engine_failure
        if failure is not None and failure.stage == "process":
            result.stopped = outcome

    hypothesis_run(drawing, block, test, shrink=False)()
    result.seconds = time.perf_counter() - started
    return result


def merged_edges(results: Sequence[BlockResult]) -> list[Outcome]:
    """The blocks' edge failures: the smallest for each set of ops (the earliest of equal size), smallest first."""
    edges: dict[frozenset[str], Outcome] = {}
    for result in results:
        for outcome in result.edges.values():
            _keep_smallest(edges, outcome)
    return sorted(edges.values(), key=lambda outcome: outcome.program.node_count)
