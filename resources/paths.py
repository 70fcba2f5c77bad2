"""Names that become path segments in the lake: shard keys are sanitised, partition values checked."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def sanitise_shard_key(name: str) -> str:
    """A partition key from a landing file's relative path: no separators, no `..`, no leading dot.

    `sub/dir/CC-MAIN 01.warc.gz` -> `sub__dir__CC-MAIN_01.warc.gz`; `../../etc/passwd` -> `etc__passwd`.
    """
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".", "..")]
    key = "__".join(_UNSAFE.sub("_", p) for p in parts)
    key = re.sub(r"\.{2,}", ".", key).lstrip("._-")
    if not key:
        raise ValueError(f"cannot make a shard key from {name!r}: nothing safe is left after sanitising")
    return key[:200]


def check_partition_value(field: str, value: str) -> str:
    """Refuse a partition value that could escape its directory (`..`, `/`, absolute paths, odd bytes)."""
    if not _SAFE_VALUE.match(value) or ".." in value:
        raise ValueError(
            f"partition {field}={value!r} is not a safe path segment: use letters, digits, '.', '_' and '-' "
            "only, no '..', no leading dot (shard keys from the sensor are sanitised this way)"
        )
    return value
