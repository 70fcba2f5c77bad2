"""Dagster resources of the project: the lake, the crawl landing location, the rephrasing engines and the tokenizer."""
