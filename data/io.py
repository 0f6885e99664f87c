"""Atomic file writes: a crash never leaves a half-written file for a reader to misread."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (non-JSON values such as paths become strings)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def write_jsonl_atomic(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write one JSON object per line."""
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
