"""Where a lake's files were registered from: one small record per landing location, written when
files are registered (`dataset-assets run --landing DIR`, `crawl_landing_sensor`), so `status` judges
the registered files against the landing they came from, not whatever the default landing is.

Layout: `<lake>/_landings/<digest of the location>.json` = {"location", "first_registered"}. One file per
location, written once (nothing to read-modify-write, so two registering processes never race).
"""

from __future__ import annotations

import hashlib
import json
import time

import pyarrow.fs as pafs

LANDINGS = "_landings"


def _name(location: str) -> str:
    return hashlib.sha256(location.encode()).hexdigest()[:16] + ".json"


def record(lake, location: str) -> None:
    """Remember that files were registered from `location` (once per location)."""
    parts = [LANDINGS, _name(location)]
    if not lake.exists(parts):
        lake.put_json(
            parts, {"location": location, "first_registered": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )


def recorded(lake) -> list[str]:
    """Every landing location files were registered from, oldest first (none for a lake whose files
    were registered before this record existed)."""
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(lake.path(LANDINGS), allow_not_found=True))
    except FileNotFoundError:
        return []
    found = []
    for info in infos:
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            with lake.fs.open_input_stream(info.path) as stream:
                data = json.loads(stream.read())
            found.append((data.get("first_registered", ""), data["location"]))
    return [location for _, location in sorted(found)]


def to_judge_against(explicit: str | None, lake) -> tuple[list[str], str]:
    """(the landing locations status lists, and why those): a landing the user names (`--landing`,
    CRAWL_LANDING) wins; else the ones the lake's files were registered from; else none known."""
    if explicit:
        return [explicit], "given"
    found = recorded(lake)
    return (found, "recorded when the files were registered") if found else ([], "none recorded")
