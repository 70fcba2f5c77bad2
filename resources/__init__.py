"""Dagster resources of the project: the lake, the crawl landing location, and (later) engines."""
