"""The dashboard's Data page: an uploaded file checked row by row and audited, before any training, as
`tunesmith data check` and `tunesmith data audit` would (same loader, same encoder, same audit), and nothing kept.

    check_and_audit(data, "chats.jsonl", state) -> {"rows", "kind", "errors": [{line, field, reason}], "audit"}
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tunesmith.config import DatasetSpec
from tunesmith.data.audit import run_audit
from tunesmith.data.loading import DataError, load_dataset
from tunesmith.serve.state import ServerState
from tunesmith.serve.uploads import row_errors, upload_renderer

SHOWN_ERRORS = 200


def _format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".json": "json"}.get(suffix, "jsonl")


def check_and_audit(data: bytes, name: str, state: ServerState) -> dict[str, Any]:
    renderer = upload_renderer(state.catalog, state.engines)
    with tempfile.TemporaryDirectory(prefix="tunesmith-data-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        spec = DatasetSpec(path=str(path), format=_format(name))
        try:
            result = load_dataset(spec)
        except DataError as err:
            return {"file": name, "rows": 0, "kind": None, "errors": [], "fatal": str(err).replace(str(path), name)}
        errors = row_errors(result, renderer)
        audit = None
        if renderer is not None and result.examples:
            report = run_audit([spec], [], renderer.tokenizer, max_length=renderer.max_length)
            audit = report.to_json()
            for section in audit["files"]:
                section["path"] = name
    return {
        "file": name,
        "rows": result.rows,
        "kind": result.kind.value if result.kind else None,
        "valid": len(result.examples),
        "errors": [
            {"where": f"{name}:{e.line}", "line": e.line, "field": e.field, "reason": e.reason}
            for e in errors[:SHOWN_ERRORS]
        ],
        "error_count": len(errors),
        "audit": audit,
    }
