"""Dagster asset graph: crawl shards -> seeds -> rephrased -> statistics -> versioned mixtures.

Training teams open a published mixture with `dataset_assets.load_mixture(name, version="latest")`.
"""


def __getattr__(name: str):
    if name == "load_mixture":  # imported lazily: `import dataset_assets` stays light
        from dataset_assets.mixtures import load_mixture

        return load_mixture
    raise AttributeError(f"module 'dataset_assets' has no attribute {name!r}")
