"""The example database: counterexamples kept on disk, per engine, so that nothing ``verify`` finds is lost.

Each counterexample is one small JSON file holding the engine's name, what
failed, the order of derivatives it was checked at (``order``: 1, or 2 for
``verify --order 2``; entries written before it was stored count as 1), and the
program in the IR's own JSON (:meth:`Program.to_dict`),
so entries survive changes to the strategies and the hypothesis version, and
can be read, edited and checked by hand (``python -m refgrad verify
--program FILE``). The layout::

    .refgrad/examples/                       the default root (under the current directory)
        <engine>-<hash of its name>/         one directory per engine
            <hash of the program>.json       one entry per program

Writes are atomic: an entry is written to a temporary file in the same
directory, flushed to disk and renamed over its final name, so a run killed
at any moment leaves either the whole entry or none. Reading never fails
on a bad entry: it is reported (:class:`CorruptEntry`) and skipped.
No pickle and no ``eval``: entries are parsed by :func:`~refgrad.oracle.program.parse_json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

from refgrad.oracle.program import MAX_PROGRAM_CHARACTERS, Program, parse_json

__all__ = [
    "DEFAULT_DATABASE",
    "ENTRY_FORMAT",
    "CorruptEntry",
    "ExampleDatabase",
    "StoredExample",
    "read_program_file",
    "read_program_file_and_order",
]

DEFAULT_DATABASE: Final = Path(".refgrad") / "examples"
"""Where ``verify`` keeps counterexamples unless told otherwise (relative to the current directory)."""

ENTRY_FORMAT: Final = "refgrad-counterexample-1"
"""The ``format`` field of every entry; a different value is reported as a corrupt entry."""

_UNSAFE_IN_NAMES: Final = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class StoredExample:
    """A counterexample read back from the database: where, for which engine, what failed, and the program."""

    path: Path
    engine: str
    failure: str
    program: Program
    order: Literal[1, 2] = 1
    """The order of derivatives the failure was found at: replay it at that order (2 checks second derivatives)."""


@dataclass(frozen=True, slots=True)
class CorruptEntry:
    """A file in the database that could not be read as an entry, and why."""

    path: Path
    reason: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_text(path: Path) -> str:
    """The file's text; ``ValueError`` (naming the file) if it is unreadable, too long or not UTF-8."""
    try:
        with path.open("rb") as file:
            # Four bytes per character at most: never read more than the parser would accept.
            raw = file.read(4 * MAX_PROGRAM_CHARACTERS + 1)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    if len(raw) > 4 * MAX_PROGRAM_CHARACTERS:
        raise ValueError(f"{path} is larger than a program file may be ({4 * MAX_PROGRAM_CHARACTERS} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start})") from None


def _entry_fields(data: object) -> Mapping[str, object] | None:
    """``data`` as a stored entry's fields, or None if it is not an entry (a bare program, say)."""
    if isinstance(data, dict) and "program" in data:
        return cast("dict[str, object]", data)
    return None


def read_program_file(path: str | os.PathLike[str]) -> Program:
    """The program in a file: a bare program's JSON (as ``verify`` prints it) or a database entry.

    ``ValueError`` naming the file and what is wrong with it otherwise.
    """
    return read_program_file_and_order(path)[0]


def read_program_file_and_order(path: str | os.PathLike[str]) -> tuple[Program, Literal[1, 2]]:
    """The program in a file (as :func:`read_program_file`) and the order it was found at: an entry's, else 1."""
    file = Path(path)
    text = _read_text(file)
    try:
        data = parse_json(text)
        entry = _entry_fields(data)
        if entry is None:
            return Program.from_dict(data), 1
        return Program.from_dict(entry["program"]), _entry_order(entry)
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from None


def _entry_order(fields: Mapping[str, object]) -> Literal[1, 2]:
    # Entries written before the order was stored were all found at order 1.
    order = fields.get("order", 1)
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"'order' must be 1 or 2, got {order!r:.80}")
    return 2 if order == 2 else 1


class ExampleDatabase:
    """Counterexamples under ``root``, one directory per engine, one JSON file per program."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_DATABASE) -> None:
        """A database at ``root`` (created when the first entry is saved)."""
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The directory holding the engines' directories."""
        return self._root

    def directory(self, engine: str) -> Path:
        """Where ``engine``'s entries live: a readable name plus a hash of the exact one (no collisions)."""
        readable = _UNSAFE_IN_NAMES.sub("_", engine).strip("._")[:60] or "engine"
        return self._root / f"{readable}-{_digest(engine)[:12]}"

    def save(self, engine: str, program: Program, failure: str, *, order: Literal[1, 2] = 1) -> Path:
        """Store ``program`` as a counterexample for ``engine``, found at ``order`` (atomically); returns its path.

        Saving the same program again replaces its entry (with the new failure description and order).
        """
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        program_json = program.to_json()
        entry = {
            "format": ENTRY_FORMAT,
            "engine": engine,
            "failure": failure,
            "order": order,
            "program": program.to_dict(),
        }
        text = _dumps(entry)
        directory = self.directory(engine)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{_digest(program_json)[:32]}.json"
        # Same directory, so that the rename is atomic; a dot name and a suffix that is not
        # .json, so that a temporary file left by a killed run is never read as an entry.
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def load(self, engine: str) -> tuple[list[StoredExample], list[CorruptEntry]]:
        """``engine``'s entries, smallest program first, and the files that could not be read as entries."""
        directory = self.directory(engine)
        if not directory.is_dir():
            return [], []
        examples: list[StoredExample] = []
        corrupt: list[CorruptEntry] = []
        for path in sorted(directory.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                examples.append(self._read(path, engine))
            except (ValueError, TypeError) as error:  # whatever is wrong with one entry, the others still count
                corrupt.append(CorruptEntry(path, str(error)))
        examples.sort(key=lambda example: (example.program.node_count, example.path.name))
        return examples, corrupt

    @staticmethod
    def _read(path: Path, engine: str) -> StoredExample:
        data = parse_json(_read_text(path))
        fields = _entry_fields(data)
        if fields is None or fields.get("format") != ENTRY_FORMAT:
            raise ValueError(f"not a counterexample entry (no 'format': {ENTRY_FORMAT!r} and 'program')")
        stored_engine, failure = fields.get("engine"), fields.get("failure")
        if stored_engine != engine:
            raise ValueError(f"stored for engine {stored_engine!r:.80}, not {engine!r}")
        if not isinstance(failure, str):
            raise ValueError(f"'failure' must be a string, got {failure!r:.80}")
        return StoredExample(path, engine, failure, Program.from_dict(fields["program"]), _entry_order(fields))


def _dumps(entry: Mapping[str, object]) -> str:
    return json.dumps(entry, allow_nan=False, indent=1) + "\n"
