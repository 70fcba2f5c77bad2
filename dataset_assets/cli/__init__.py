"""`dataset-assets`: run the graph through Dagster's own execution without a daemon, see what is left
to do, and get published mixtures out of the lake. One module per group of commands."""

from __future__ import annotations

import argparse

from dataset_assets.cli import graph, mixtures, models, proxy


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="dataset-assets", description=__doc__)
    sub = out.add_subparsers(dest="command", required=True)
    for group in (graph, models, mixtures, proxy):
        group.add_parsers(sub)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
