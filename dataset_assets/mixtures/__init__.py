"""Versioned training mixtures: recipes, building, pulling, lineage (`load_mixture` opens one as a Dataset)."""

from dataset_assets.mixtures.pull import duckdb_views, list_versions, load_mixture, pull

__all__ = ["duckdb_views", "list_versions", "load_mixture", "pull"]
