"""The Dagster helpers that `defs/` and the CLI share: the graph's asset keys and partitions, the
runs and backfills in flight, runs over many shards, `dataset-assets run`'s stage runner, and the
one import of Dagster's private names. The only package outside `defs/` that imports Dagster."""
