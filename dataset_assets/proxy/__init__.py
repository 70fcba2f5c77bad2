"""Proxy evaluation without Dagster: which mixture is better, by what small models trained on it learn.
Specs (spec.py), token shards (tokens.py), decontamination, training (train.py, runs.py), metrics,
the GPU tiers' hand-over (gpu_tier.py), the lake layout (store.py) and the leaderboard."""
