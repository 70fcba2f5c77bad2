"""What the lake holds and what is left to do, without Dagster: the status catalog, the batch
registry, the walk a catalog rebuild makes, and the verdict on every partition (current, outdated
and why, or missing) that `dataset-assets status`, `run` and the nightly backfill act on."""
