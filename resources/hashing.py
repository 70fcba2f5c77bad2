"""Content hashes of files, read in blocks (a model file is never read into memory whole)."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def stream_sha256(stream) -> tuple[str, int]:
    """(sha256 hex, bytes) of everything a binary stream still holds."""
    h, size = hashlib.sha256(), 0
    while block := stream.read(BLOCK):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def file_sha256(path: Path | str) -> str:
    """sha256 hex of a local file (a lake file on S3: `stream_sha256` over its input stream)."""
    with open(path, "rb") as stream:
        return stream_sha256(stream)[0]
