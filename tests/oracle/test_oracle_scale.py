"""verify -j N and --shard K/N with merge: the same programs, the same counts and verdict as one process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from _toy_engine import ToyValue

from refgrad.oracle import verify
from refgrad.oracle.blocks import BLOCK_SIZE, Shard, campaign_blocks, shard_argument
from refgrad.oracle.command import run_merge
from refgrad.oracle.engines import MicrogradStyleEngine, RefgradEngine
from refgrad.oracle.parallel import jobs_argument

HERE = Path(__file__).parent

# What may differ between runs of one campaign however it is split: time, and how it was split.
_VOLATILE = ("seconds", "random_seconds", "jobs", "shard", "shards", "blocks_checked")


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m refgrad`` in a fresh interpreter (each as a user runs it), the corpus engines importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "refgrad", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
        check=False,
    )


def _card(run: subprocess.CompletedProcess[str]) -> dict[str, object]:
    card: dict[str, object] = json.loads(run.stdout)
    for key in _VOLATILE:
        card.pop(key)
    return card


def _verify_json(tmp_path: Path, engine: str, *args: str) -> tuple[int, dict[str, object], str]:
    run = _cli(tmp_path, "verify", "--engine", engine, "--no-database", "--format", "json", *args)
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, _card(run), run.stdout


def test_a_campaigns_blocks_depend_on_its_seed_and_size_alone() -> None:
    blocks = campaign_blocks(2 * BLOCK_SIZE + 7, seed_value=3)
    assert [block.size for block in blocks] == [BLOCK_SIZE, BLOCK_SIZE, 7]
    assert blocks == campaign_blocks(2 * BLOCK_SIZE + 7, seed_value=3)
    assert len({block.seed for block in blocks} | {block.seed for block in campaign_blocks(600, 4)}) == 6
    shards = [Shard(index, 3) for index in (1, 2, 3)]
    many = campaign_blocks(10 * BLOCK_SIZE, 0)
    owners = [[shard for shard in shards if shard.owns(block)] for block in many]
    assert all(len(owner) == 1 for owner in owners)  # every block in exactly one shard
    assert [len([b for b in many if shard.owns(b)]) for shard in shards] == [4, 3, 3]


@pytest.mark.parametrize(
    ("text", "error"),
    [("0/2", ValueError), ("3/2", ValueError), ("a/b", ValueError), ("2", ValueError), (2, TypeError)],
)
def test_a_bad_shard_is_refused_naming_it(text: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="shard"):
        shard_argument(text)


@pytest.mark.parametrize(("jobs", "error"), [(0, ValueError), (-1, ValueError), ("2", TypeError), (True, TypeError)])
def test_bad_jobs_are_refused_naming_them(jobs: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="jobs"):
        jobs_argument(jobs)
    with pytest.raises(error, match="jobs"):
        verify(RefgradEngine(), examples=10, jobs=jobs)  # type: ignore[arg-type]  # the wrong type is the point


def test_an_engine_that_cannot_reach_a_worker_process_is_a_clear_error() -> None:
    class Local(ToyValue):  # defined in a function: pickle cannot name it, so no worker can load it
        pass

    with pytest.raises(ValueError, match=r"cannot be sent to worker processes.*jobs=1"):
        verify(MicrogradStyleEngine(Local), examples=2 * BLOCK_SIZE, jobs=2)


def test_jobs_and_shards_check_the_same_programs_and_count_the_same(tmp_path: Path) -> None:
    """refgrad on 3 blocks: -j 1, -j 2 (twice), and 2 shards merged give one card, counts and all."""
    common = ("--examples", str(2 * BLOCK_SIZE + 50), "--seed", "5", "--ops", "add,mul,tanh,pow,relu")
    status, one, _ = _verify_json(tmp_path, "refgrad", *common, "-j", "1")
    assert status == 0
    assert one["graphs"] == 2 * BLOCK_SIZE + 50
    twice = [_verify_json(tmp_path, "refgrad", *common, "-j", "2")[1] for _ in range(2)]
    assert twice == [one, one]
    paths: list[str] = []
    for k in (1, 2):
        run = _cli(tmp_path, "verify", "--no-database", "--format", "json", *common, "--shard", f"{k}/2", "-j", "1")
        assert run.returncode == 0, run.stderr
        path = tmp_path / f"shard{k}.json"
        path.write_text(run.stdout)
        paths.append(str(path))
    shard_graphs = [json.loads(Path(path).read_text())["graphs"] for path in paths]
    assert shard_graphs == [BLOCK_SIZE + 50, BLOCK_SIZE]  # blocks 0 and 2, block 1
    merged = _cli(tmp_path, "merge", *paths, "--format", "json")
    assert merged.returncode == 0, merged.stderr
    assert _card(merged) == one
    text = _cli(tmp_path, "merge", *reversed(paths))
    assert text.returncode == 0
    assert "merged from 2 shards" in text.stdout
    assert text.stdout.startswith(
        f"PASS: refgrad: 0 defects, 0 warnings; checked {one['forms_checked']} of {one['forms_asked']} op forms, "
        f"{one['structured']} structured programs, {one['graphs']} random graphs"
    )


def test_a_buggy_engine_gets_the_same_card_from_one_process_two_and_shards(tmp_path: Path) -> None:
    """ManyBugs (three wrong rules), each worker with its own isolated engine process: same verdict and counts."""
    common = ("--examples", str(2 * BLOCK_SIZE), "--seed", "1")
    status, one, _ = _verify_json(tmp_path, "_corpus:ManyBugs", *common, "-j", "1")
    assert status == 1
    two_status, two, _ = _verify_json(tmp_path, "_corpus:ManyBugs", *common, "-j", "2")
    assert (two_status, two) == (status, one)  # the same findings too: the parent diagnoses every block's failures
    defects = _defects(one)
    assert {"tanh", "sub", "relu"} <= {op for op, _ in defects}
    paths: list[str] = []
    for k in (1, 2):
        run = _cli(
            tmp_path,
            "verify",
            "--engine",
            "_corpus:ManyBugs",
            "--no-database",
            "--format",
            "json",
            *common,
            "--shard",
            f"{k}/2",
        )
        assert run.returncode == 1, run.stderr
        path = tmp_path / f"bugs{k}.json"
        path.write_text(run.stdout)
        paths.append(str(path))
    merged = _cli(tmp_path, "merge", *paths, "--format", "json")
    assert merged.returncode == 1
    card = _card(merged)
    assert card["verdict"] == one["verdict"]
    assert {key: value for key, value in card.items() if key not in ("findings", "defects", "warnings")} == {
        key: value for key, value in one.items() if key not in ("findings", "defects", "warnings")
    }
    merged_defects = _defects(card)
    assert defects <= merged_defects
    text = _cli(tmp_path, "merge", *paths)
    assert "reproduce it (engine, then the reference):" in text.stdout  # the scripts survive the JSON
    assert "disagreement:" in text.stdout


def _defects(card: dict[str, object]) -> set[tuple[object, object]]:
    findings = cast("list[dict[str, object]]", card["findings"])
    return {(f["op"], f["kind"]) for f in findings if f["severity"] == "defect"}


def _shard_files(tmp_path: Path, count: int, **changes: object) -> list[Path]:
    paths: list[Path] = []
    for index in range(1, count + 1):
        card = verify(RefgradEngine(), examples=20, ops=["add"], shard=f"{index}/{count}").to_dict()
        card.update(changes)
        path = tmp_path / f"s{index}.json"
        path.write_text(json.dumps(card))
        paths.append(path)
    return paths


def _merge_error(paths: list[Path]) -> str:
    import io

    out, err = io.StringIO(), io.StringIO()
    assert run_merge(paths, out=out, err=err) == 2
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_merge_refuses_what_is_not_one_whole_campaign(tmp_path: Path) -> None:
    first, second, third = _shard_files(tmp_path, 3)
    assert "shard 3/3 missing" in _merge_error([first, second])
    assert "both shard 1/3" in _merge_error([first, first, second, third])
    other = tmp_path / "other.json"
    card = json.loads(first.read_text())
    card["seed"] = 9
    other.write_text(json.dumps(card))
    assert "their seed differ" in _merge_error([other, second, third])
    broken = tmp_path / "broken.json"
    broken.write_text('{"verdict": ')
    assert "broken.json: not JSON" in _merge_error([broken])
    assert "not a report of verify --format json" in _merge_error([_write(tmp_path, "x.json", "[1, 2]")])
    assert "cannot be read" in _merge_error([tmp_path / "absent.json"])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_shard_counts_the_structured_programs_only_once(tmp_path: Path) -> None:
    whole = verify(RefgradEngine(), examples=20, ops=["add"])
    first, second = (json.loads(path.read_text()) for path in _shard_files(tmp_path, 2))
    assert first["structured"] == whole.structured > 0
    assert second["structured"] == 0
    assert first["graphs"] + second["graphs"] == whole.graphs == 20


def test_workers_draw_with_the_numbers_of_a_module_they_cannot_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module loaded from a folder only the caller had on its path: the workers draw as the caller does."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    numbers = ", ".join(repr(1.0 + k / 7919.0) for k in range(1, 60))
    ran = tmp_path / "ran"
    (folder / "numbers_of_mine.py").write_text(f"open({str(ran)!r}, 'a').close()\nNUMBERS = ({numbers})\n")
    spec = importlib.util.spec_from_file_location("numbers_of_mine", folder / "numbers_of_mine.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "numbers_of_mine", module)  # loaded, but from no folder on the path
    ran.unlink()
    engine = MicrogradStyleEngine(ToyValue)
    one = verify(engine, examples=BLOCK_SIZE + 50, seed_value=2, ops=["add", "mul", "tanh"], jobs=1).to_dict()
    two = verify(engine, examples=BLOCK_SIZE + 50, seed_value=2, ops=["add", "mul", "tanh"], jobs=2).to_dict()
    for card in (one, two):
        for key in _VOLATILE:
            card.pop(key)
    assert two == one
    assert not ran.exists()  # the workers read the module's numbers without running it
