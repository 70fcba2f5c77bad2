"""Order-independent exact and near-duplicate removal across a crawl (MinHash LSH).

Four stages, each a Dagster asset: signatures per shard (`minhash`), candidate buckets per LSH band
(`buckets`), clusters over the candidates with an order-independent representative (`clusters`),
and the decisions `seeds` applies per shard.
"""
