"""Elasticsearch ``_bulk`` ingest, answered as Elasticsearch answers it.

Fluentd, Fluent Bit, Logstash and Vector send NDJSON pairs of an action line
(``{"index": {...}}`` or ``{"create": {...}}``) and a document. Documents become log records
(see :func:`signalroom.logs.pipeline.records_to_batch`); ``update`` and ``delete`` get a
per-item error, as an append-only store must. Clients check the ``X-Elastic-Product`` header
and the version in ``GET /``, both provided by the web layer.
"""

from __future__ import annotations

import gzip
import json
import uuid
from dataclasses import dataclass
from typing import Any

from signalroom.logs.pipeline import EntryBatch, IngestError, records_to_batch

__all__ = ["ES_VERSION", "BulkRequest", "bulk_response", "es_root", "parse_bulk"]

ES_VERSION = "8.11.0"


@dataclass
class BulkItem:
    action: str
    index: str
    doc_id: str
    error: str | None = None


@dataclass
class BulkRequest:
    items: list[BulkItem]
    batch: EntryBatch


def parse_bulk(
    body: bytes,
    *,
    default_index: str | None,
    content_encoding: str = "",
    label_fields: tuple[str, ...] = (),
) -> BulkRequest:
    """Parse an NDJSON bulk body. Raises IngestError (400) naming the line at fault."""
    if content_encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except Exception as exc:
            raise IngestError(f"cannot decompress the gzip body: {exc}") from None
    lines = body.split(b"\n")
    items: list[BulkItem] = []
    records: list[dict[str, Any]] = []
    item_of_record: list[int] = []
    i = 0
    while i < len(lines):
        raw = lines[i].strip()
        i += 1
        if not raw:
            continue
        try:
            action_obj = json.loads(raw)
        except ValueError as exc:
            raise IngestError(f"line {i}: action is not valid JSON: {exc}") from None
        if not isinstance(action_obj, dict) or len(action_obj) != 1:
            raise IngestError(
                f"line {i}: Malformed action/metadata line, expected one of "
                "index, create, update, delete"
            )
        action, meta = next(iter(action_obj.items()))
        if action not in ("index", "create", "update", "delete") or not isinstance(meta, dict):
            raise IngestError(f"line {i}: Malformed action/metadata line [{action}]")
        index = str(meta.get("_index") or default_index or "")
        doc_id = str(meta.get("_id") or uuid.uuid4().hex[:20])
        if not index:
            raise IngestError(f"line {i}: no index given (action metadata _index or the URL)")
        if action == "delete":
            items.append(BulkItem(action, index, doc_id, "delete is not supported"))
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            raise IngestError(f"line {i}: {action} action without a document line after it")
        doc_raw = lines[i]
        i += 1
        if action == "update":
            items.append(BulkItem(action, index, doc_id, "update is not supported"))
            continue
        try:
            document = json.loads(doc_raw)
        except ValueError as exc:
            raise IngestError(f"line {i}: document is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise IngestError(f"line {i}: document must be a JSON object")
        records.append(document)
        item_of_record.append(len(items))
        items.append(BulkItem(action, index, doc_id))
    try:
        batch = records_to_batch(records, extra_label_fields=label_fields, where="document")
    except IngestError as exc:
        raise IngestError(f"{exc}") from None
    return BulkRequest(items, batch)


def bulk_response(request: BulkRequest, took_ms: int, seq_start: int) -> dict[str, Any]:
    items = []
    errors = False
    for offset, item in enumerate(request.items):
        body: dict[str, Any] = {"_index": item.index, "_id": item.doc_id}
        if item.error is not None:
            errors = True
            body["status"] = 400
            body["error"] = {
                "type": "illegal_argument_exception",
                "reason": f"signalroom stores logs append-only: {item.error}",
            }
        else:
            body.update(
                {
                    "_version": 1,
                    "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": seq_start + offset,
                    "_primary_term": 1,
                    "status": 201,
                }
            )
        items.append({item.action: body})
    return {"took": took_ms, "errors": errors, "items": items}


def es_root() -> dict[str, Any]:
    """What ``GET /`` of an Elasticsearch node answers (clients read version.number)."""
    return {
        "name": "signalroom",
        "cluster_name": "signalroom",
        "cluster_uuid": "c2lnbmFscm9vbS1sb2dz",
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "tar",
            "build_hash": "signalroom",
            "build_date": "2023-11-04T10:04:57.184859352Z",
            "build_snapshot": False,
            "lucene_version": "9.8.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }
