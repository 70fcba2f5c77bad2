"""Which seeds a new clustering makes missing or outdated: each clustering records per shard file a
fingerprint of its dedup decisions, each seeds partition the one it applied; the seeds whose
fingerprints differ are rebuilt (by `dedup_seeds_sensor`, the nightly backfill and `status`)."""

from __future__ import annotations

from dataclasses import dataclass

from dataset_assets.status import batches


def seeds_to_redo(fingerprints: dict[str, str], seeds: dict[str, dict]) -> dict[str, str]:
    """Shards the clusters cover whose seeds are missing or were made with other dedup decisions:
    {shard: "missing" | "outdated"}. Exactly the seeds partitions a new clustering affects."""
    out = {}
    for shard, fingerprint in fingerprints.items():
        made = seeds.get(shard)
        if made is None:
            out[shard] = "missing"
        elif made.get("dedup_fingerprint") != fingerprint:
            out[shard] = "outdated"
    return out


@dataclass
class SeedsToRedo:
    """The seeds a clustering makes missing or outdated, as the partitions (batches of files) that
    hold them: `files` to (re)build, their `partitions`, and how many files are no longer registered
    (`gone`: signed, then deleted from the partitions)."""

    files: dict[str, str]
    partitions: set[str]
    gone: int
    fingerprints: dict[str, str]
    registry: batches.Batches

    def versions(self, keys) -> dict[str, str]:
        """Each partition's version (its files' dedup fingerprints), which names a run so it is never
        launched twice for the same decisions; only for `keys` (a tick's requests, not every partition)."""
        return {key: "+".join(self.fingerprints.get(f, "") for f in self.registry.files(key)) for key in keys}


def seeds_partitions_to_redo(
    fingerprints: dict[str, str], seeds: dict[str, dict], order: list[str], registry: batches.Batches
) -> SeedsToRedo:
    batch_of = registry.batch_of(order)
    files = seeds_to_redo(fingerprints, seeds)
    partitions = {batch_of[f] for f in files if f in batch_of}
    return SeedsToRedo(files, partitions, sum(1 for f in files if f not in batch_of), fingerprints, registry)
