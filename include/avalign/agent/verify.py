"""Re-check a published dataset against its integrity manifests (``python -m avalign verify URI``).

Every pointer ``<out>/published/<partition>.json`` lists each object a consumer may read with its
SHA-256 and size (avalign.agent.publish). Verification re-reads every object, streamed, and
reports what is missing or altered, and whether the counts still reconcile: clips in =
improved + kept_original + quarantined, one results row per clip, one output per published clip.
Nothing is modified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from avalign.agent.publish import OUTCOME_NAMES, results_frame
from avalign.data import storage
from avalign.errors import StorageError


@dataclass(frozen=True)
class Finding:
    partition: str
    problem: str  # missing | altered | unreadable | counts | no_integrity_manifest | manifest_changed
    uri: str | None
    detail: str


@dataclass
class VerifyReport:
    dataset_uri: str
    partitions: list[str] = field(default_factory=list)
    objects_checked: int = 0
    bytes_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_uri": self.dataset_uri, "ok": self.ok, "partitions": self.partitions,
                "objects_checked": self.objects_checked, "bytes_checked": self.bytes_checked,
                "findings": [f.__dict__ for f in self.findings]}


def verify_dataset(out_uri: str, *, progress: Callable[[str], None] = print) -> VerifyReport:
    """Check every published partition of ``out_uri``; never raises for a bad object."""
    report = VerifyReport(out_uri)
    pointers = storage.list_files(storage.join(out_uri, "published"), suffix=".json")
    if not pointers:
        report.findings.append(Finding("-", "missing", storage.join(out_uri, "published"),
                                       "no published partitions (no published/*.json)"))
        return report
    for uri in pointers:
        try:
            doc = json.loads(storage.read_bytes(uri))
        except (StorageError, ValueError) as exc:
            report.findings.append(Finding(uri.rsplit("/", 1)[-1], "unreadable", uri, str(exc)))
            continue
        partition = str(doc.get("partition"))
        report.partitions.append(partition)
        before = len(report.findings)
        _verify_pointer(doc, partition, report)
        bad = len(report.findings) - before
        progress(f"[{partition}] {len(doc.get('objects') or [])} objects: "
                 + ("ok" if not bad else f"{bad} problem(s)"))
    return report


def _verify_pointer(doc: dict[str, Any], partition: str, report: VerifyReport) -> None:
    add = report.findings.append
    objects = doc.get("objects")
    if not objects:
        add(Finding(partition, "no_integrity_manifest", None,
                    "pointer has no object checksums (published before format 2): re-publish it"))
        return
    for obj in objects:
        uri = obj["uri"]
        try:
            digest, size = storage.checksum(uri)
        except StorageError as exc:
            problem = {"not_found": "missing", "checksum_mismatch": "altered"}.get(exc.reason, "unreadable")
            add(Finding(partition, problem, uri, f"{obj['role']} of {obj.get('clip_id') or 'the partition'}: {exc}"))
            continue
        report.objects_checked += 1
        report.bytes_checked += size
        if digest != obj["sha256"] or size != obj["bytes"]:
            add(Finding(partition, "altered", uri,
                        f"{obj['role']} of {obj.get('clip_id') or 'the partition'}: sha256 {digest[:12]}… "
                        f"({size} bytes), published {obj['sha256'][:12]}… ({obj['bytes']} bytes)"))
    _verify_counts(doc, partition, report)


def _verify_counts(doc: dict[str, Any], partition: str, report: VerifyReport) -> None:
    add = report.findings.append
    counts = {k: int(doc.get("counts", {}).get(k, 0)) for k in OUTCOME_NAMES}
    n_in = int(doc.get("n_in", -1))
    if sum(counts.values()) != n_in:
        add(Finding(partition, "counts", None, f"{n_in} clips in but {counts} accounted for"))
    if len(doc.get("outputs") or []) != counts["improved"] + counts["kept_original"]:
        add(Finding(partition, "counts", None, f"{len(doc.get('outputs') or [])} outputs listed for "
                                               f"{counts['improved']} improved + {counts['kept_original']} kept"))
    try:
        table = results_frame(doc["results_uri"])
    except (StorageError, KeyError, ValueError, OSError) as exc:
        add(Finding(partition, "unreadable", doc.get("results_uri"), f"results table: {exc}"))
        return
    table_counts = {k: int((table["outcome"] == k).sum()) for k in OUTCOME_NAMES}
    if len(table) != n_in or table_counts != counts or table["clip_id"].duplicated().any():
        add(Finding(partition, "counts", doc["results_uri"],
                    f"results table has {len(table)} rows {table_counts}; pointer says {n_in} {counts}"))
    manifest = doc.get("manifest_uri")
    if manifest and doc.get("manifest_sha256"):
        try:
            digest, _ = storage.checksum(manifest)
        except StorageError as exc:
            add(Finding(partition, "manifest_changed", manifest, f"input manifest unreadable: {exc}"))
            return
        if digest != doc["manifest_sha256"]:
            add(Finding(partition, "manifest_changed", manifest,
                        "the input manifest changed since this partition was published: rebuild it"))


def format_report(report: VerifyReport) -> str:
    """Human-readable summary: one line per finding, then the verdict."""
    lines = [f"  {f.partition}  {f.problem:<22} {f.uri or '-'}  {f.detail}" for f in report.findings]
    mib = report.bytes_checked / 2**20
    verdict = "OK" if report.ok else f"FAILED: {len(report.findings)} problem(s)"
    lines.append(f"{report.dataset_uri}: {len(report.partitions)} partition(s), {report.objects_checked} objects, "
                 f"{mib:.1f} MiB checked: {verdict}")
    return "\n".join(lines)
