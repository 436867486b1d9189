"""``python -m refgrad merge``: the JSON reports of a campaign's shards added up into one card.

Each shard (``verify --shard K/N --format json``) checked an interleaved Nth of the campaign's
blocks (:mod:`refgrad.oracle.blocks`). Merging checks that the reports are the N shards of one
campaign (same engine, seed, size, references, order and op forms; every K once), sums the counts,
keeps the worst of each worst, and deduplicates the findings as one run does; the verdict is the
merged findings' (a defect fails; under ``--strict`` a warning too).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final, cast

from refgrad.oracle.blocks import Shard, shard_argument
from refgrad.oracle.findings import Finding
from refgrad.oracle.references import REFERENCE_CHOICES
from refgrad.oracle.runner import VerificationReport, duplicate_finding
from refgrad.oracle.tally import OpStats

__all__ = ["merge_reports", "read_report"]

_SAME: Final = ("engine", "seed", "strict", "references", "order", "checked", "campaign", "forms_asked")
"""What the shards of one campaign share."""


def read_report(path: str | os.PathLike[str]) -> dict[str, object]:
    """A JSON report as ``verify --format json`` wrote it; ``ValueError`` naming the file and what is wrong."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as stream:
            data: object = json.load(stream)
    except OSError as error:
        raise ValueError(f"{name}: cannot be read: {error.strerror or error}") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{name}: not JSON: {error}") from error
    if not isinstance(data, dict) or "verdict" not in data or "campaign" not in data or "counts" not in data:
        raise ValueError(f"{name}: not a report of verify --format json (of this refgrad version)")
    return cast("dict[str, object]", data)


def _int(data: Mapping[str, object], key: str, where: str, *, count: bool = True) -> int:
    """``data[key]`` as a whole number (a count: not negative); ``ValueError`` naming ``where`` otherwise."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or (count and value < 0):
        raise ValueError(f"{where}: {key} must be a {'count' if count else 'whole number'}, got {value!r:.80}")
    return value


def _counter(data: Mapping[str, object], key: str, where: str) -> Counter[str]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {key} must be an object of counts")
    table = cast("dict[str, object]", value)
    return Counter({name: _int(table, name, f"{where}: {key}") for name in table})


def _ulps(value: object, where: str) -> float | None:
    if value is None:
        return None
    if value == "inf":
        return float("inf")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: ulps must be a number, 'inf' or null, got {value!r:.80}")
    return float(value)


def _stats(report: Mapping[str, object], where: str) -> dict[str, OpStats]:
    ops, counts = report.get("ops"), report.get("counts")
    if not isinstance(ops, dict) or not isinstance(counts, dict):
        raise ValueError(f"{where}: ops and counts must be objects")
    stats: dict[str, OpStats] = {}
    for op, entry in cast("dict[str, object]", ops).items():
        count = cast("dict[str, object]", counts).get(op)
        if not isinstance(entry, dict) or not isinstance(count, dict):
            raise ValueError(f"{where}: op {op!r:.40} has no counts")
        entry_map, count_map = cast("dict[str, object]", entry), cast("dict[str, object]", count)
        at = f"{where}: {op}"
        worst = entry_map.get("worst")
        stats[op] = OpStats(
            graphs=_int(entry_map, "graphs", at),
            value=_int(count_map, "value", at),
            gradient=_int(count_map, "gradient", at),
            finite_difference=_int(count_map, "finite_difference", at),
            domain=_int(count_map, "domain", at),
            forward_mode=_int(count_map, "forward_mode", at),
            second_order=_int(count_map, "second_order", at),
            second_order_fd=_int(count_map, "second_order_fd", at),
            skipped=_int(count_map, "skipped", at),
            worst=float(worst) if isinstance(worst, int | float) and not isinstance(worst, bool) else 0.0,
            value_ulps=_ulps(entry_map.get("value_ulps"), at),
            gradient_ulps=_ulps(entry_map.get("gradient_ulps"), at),
        )
    return stats


def _check_shards(reports: Sequence[tuple[str, Mapping[str, object]]]) -> int:
    """The shard count N, after checking the reports are shards 1 to N of one campaign, each once."""
    first_name, first = reports[0]
    for name, report in reports[1:]:
        for key in _SAME:
            if report.get(key) != first.get(key):
                raise ValueError(
                    f"{name} and {first_name} are not shards of one campaign: their {key} differ "
                    f"({report.get(key)!r:.60} and {first.get(key)!r:.60})"
                )
    shards: list[tuple[str, Shard]] = []
    for name, report in reports:
        shard = report.get("shard")
        if shard is None:
            if len(reports) > 1:
                raise ValueError(f"{name} is a whole run, not a shard (verify --shard K/N): there is nothing to merge")
            return 1
        shards.append((name, shard_argument(shard, f"{name}: shard")))
    count = shards[0][1].count
    seen: dict[int, str] = {}
    for name, shard in shards:
        if shard.count != count:
            raise ValueError(f"{name} is shard {shard} and {shards[0][0]} is {shards[0][1]}: not one campaign")
        if shard.index in seen:
            raise ValueError(f"{name} and {seen[shard.index]} are both shard {shard}")
        seen[shard.index] = name
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in seen]
    if missing:
        raise ValueError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing: a card needs them all")
    return count


def merge_reports(reports: Sequence[tuple[str, Mapping[str, object]]]) -> VerificationReport:
    """One card from the JSON reports of a campaign's shards (each as ``(file name, report)``).

    ``ValueError`` naming the file for a report that is malformed or not a shard of the same campaign,
    and naming the missing shards.
    """
    if not reports:
        raise ValueError("merge needs at least one report")
    count = _check_shards(reports)
    ordered = sorted(reports, key=lambda pair: shard_argument(pair[1].get("shard")).index) if count > 1 else reports
    stats: dict[str, OpStats] = {}
    findings: list[Finding] = []
    kinds: Counter[str] = Counter()
    by_reference: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    graphs = structured = nodes = deepest = out_of_domain = forms_checked = 0
    seconds = total_seconds = 0.0
    forward_mode = False
    random_skipped: str | None = None
    unsupported: dict[str, str] = {}
    for name, report in ordered:
        for op, op_stats in _stats(report, name).items():
            stats.setdefault(op, OpStats()).merge(op_stats)
        kinds.update(_counter(report, "checks_by_kind", name))
        by_reference.update(_counter(report, "checks_by_reference", name))
        skips.update(_counter(report, "skip_reasons", name))
        graphs += _int(report, "graphs", name)
        structured += _int(report, "structured", name)
        nodes += _int(report, "nodes", name)
        deepest = max(deepest, _int(report, "deepest", name))
        out_of_domain += _int(report, "out_of_domain", name)
        forms_checked = max(forms_checked, _int(report, "forms_checked", name))
        seconds += _number(report, "random_seconds", name)
        total_seconds = max(total_seconds, _number(report, "seconds", name))
        forward_mode = forward_mode or report.get("forward_mode") is True
        skipped = report.get("random_skipped")
        random_skipped = skipped if isinstance(skipped, str) else random_skipped
        left_out = report.get("unsupported")
        if isinstance(left_out, dict):
            unsupported.update({str(key): str(value) for key, value in cast("dict[str, object]", left_out).items()})
        for finding in _findings(report, name):
            if not duplicate_finding(finding, findings):
                findings.append(finding)
    findings.sort(key=lambda finding: finding.severity != "defect")
    first_name, first = ordered[0]
    campaign = first.get("campaign")
    requested = (
        _int(cast("dict[str, object]", campaign), "examples", f"{first_name}: campaign")
        if isinstance(campaign, dict)
        else graphs
    )
    references = first.get("references")
    order = first.get("order")
    checked = first.get("checked")
    return VerificationReport(
        engine=str(first.get("engine")),
        seed=_int(first, "seed", first_name, count=False),
        requested=requested,
        graphs=graphs,
        seconds=seconds,
        stats=stats,
        unsupported=unsupported,
        skip_reasons=dict(skips),
        checks=dict(kinds),
        mean_nodes=nodes / max(graphs, 1),
        deepest=deepest,
        out_of_domain=out_of_domain,
        failure=None,
        failure_script=None,
        order=2 if order == 2 else 1,
        forward_mode=forward_mode,
        findings=tuple(findings),
        forms_checked=forms_checked,
        forms_asked=_int(first, "forms_asked", first_name),
        strict=first.get("strict") is True,
        structured=structured,
        total_seconds=total_seconds,
        random_skipped=random_skipped,
        checked=tuple(str(form) for form in cast("list[object]", checked)) if isinstance(checked, list) else (),
        accumulation=_accumulation(first.get("accumulation")),
        references=references if references in REFERENCE_CHOICES else "torch",
        checks_by_reference=dict(by_reference),
        jobs=1,
        shard=None,
        blocks=sum(_int(report, "blocks_checked", name) for name, report in ordered),
        shards=count,
    )


def _findings(report: Mapping[str, object], name: str) -> list[Finding]:
    raw = report.get("findings")
    if not isinstance(raw, list):
        raise ValueError(f"{name}: findings must be a list")
    findings: list[Finding] = []
    for entry in cast("list[object]", raw):
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: a finding is not an object")
        try:
            findings.append(Finding.from_dict(cast("dict[str, object]", entry)))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: {error}") from error
    return findings


def _number(data: Mapping[str, object], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: {key} must be a number of seconds, got {value!r:.80}")
    return float(value)


def _accumulation(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(str(item) for item in cast("list[object]", value))
