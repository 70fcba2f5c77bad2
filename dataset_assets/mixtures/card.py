"""The dataset card (README.md with `datasets` front matter) of a published mixture version."""

from __future__ import annotations

import yaml

from dataset_assets.mixtures.component_measures import measures_markdown


def dataset_card(manifest: dict) -> str:
    name, version = manifest["name"], manifest["version"]
    front = {
        "pretty_name": f"{name} {version}",
        "tags": ["synthetic", "pretraining", "mixture"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "part-*.parquet"}]}],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name} {version}",
        "",
        manifest["recipe"]["description"] or "A pretraining mixture of natural seed documents and rephrased text.",
        "",
        f"{manifest['rows']:,} rows, {manifest['tokens']:,} tokens ({manifest['tokenizer']['name']}), "
        f"budget {manifest['budget_tokens']:,}, seed {manifest['recipe']['seed']}, "
        f"max repetition {manifest['recipe']['max_repetition']:g}.",
        "",
        "| component | weight | tokens | share | rows | repetition |",
        "|---|---|---|---|---|---|",
    ]
    for label, c in manifest["components"].items():
        share = manifest["achieved_shares"][label]
        lines.append(
            f"| {label} | {c['weight']:.4g} | {c['tokens']:,} | {share:.2%} | {c['rows']:,} | {c['repetition']:.3f} |"
        )
    lines += ["", *measures_markdown(manifest.get("component_measures", {}))]
    lines += [
        "Columns: `id`, `text`, `component` (`natural` or the rephrasing strategy), `source_id` (the seeds or",
        "rephrased row), `shard`, `seed_id`, `rephrased_id`, `tokens`, `repeat` (0 on first use), `prompt_hash`, "
        "`generator`.",
        "Every row traces back to its crawl record: `dataset-assets lineage ROW_ID --mixture "
        f"{name}@{version}`. `manifest.json` lists the upstream partitions and their data versions,",
        "prompt hashes, generator, code version and a sha256 per file.",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("path/to/{name}-{version}", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)
