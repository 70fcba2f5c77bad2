"""`dataset-assets versions`, `pull` and `lineage`: published mixtures for the teams that train on them."""

from __future__ import annotations

import argparse
import sys

from dataset_assets.cli.environment import lake_from


def cmd_versions(args: argparse.Namespace) -> int:
    from dataset_assets.mixtures.pull import VersionNotFoundError, list_versions
    from dataset_assets.mixtures.pull import cmd_versions as versions_table

    try:
        print(versions_table(lake_from(args), args.name))
        return 0 if list_versions(lake_from(args), args.name) else 1
    except VersionNotFoundError as exc:  # a mistyped name: say which mixtures exist, no traceback
        print(f"versions failed: {exc}", file=sys.stderr)
        return 1


def cmd_pull(args: argparse.Namespace) -> int:
    from dataset_assets.mixtures.pull import ChecksumError, VersionNotFoundError
    from dataset_assets.mixtures.pull import cmd_pull as pull_text
    from dataset_assets.proxy.tokens import pull_tokens

    try:
        if args.tokens:
            print(pull_tokens(lake_from(args), args.spec, args.tokens, args.dest))
        else:
            print(pull_text(lake_from(args), args.spec, args.dest))
    except (ChecksumError, VersionNotFoundError, FileNotFoundError, OSError) as exc:
        print(f"pull failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from dataset_assets.mixtures.lineage import cmd_lineage as lineage_text

    try:
        print(lineage_text(lake_from(args), args.mixture, args.row_id))
    except (KeyError, LookupError, FileNotFoundError, ValueError) as exc:
        print(f"lineage failed: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub) -> None:
    versions = sub.add_parser("versions", help="list the published versions of a mixture")
    versions.add_argument("name")
    versions.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    versions.set_defaults(func=cmd_versions)
    pull = sub.add_parser("pull", help="copy a mixture version out of the lake, verifying checksums")
    pull.add_argument("spec", help="NAME or NAME@VERSION (default latest)")
    pull.add_argument("dest")
    pull.add_argument("--tokens", metavar="TOKENIZER", help="the version's token shards instead (e.g. bytes, gpt2)")
    pull.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    pull.set_defaults(func=cmd_pull)
    lineage = sub.add_parser("lineage", help="trace a mixture row to its rephrased row, seed and crawl record")
    lineage.add_argument("row_id")
    lineage.add_argument("--mixture", required=True, help="NAME@VERSION")
    lineage.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    lineage.set_defaults(func=cmd_lineage)
