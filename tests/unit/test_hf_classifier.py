"""Loading a Hugging Face quality classifier (the FineWeb-Edu shape) by run config: a small random
model written here, so this tests loading, batching and calibration, not the judgments."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dagster import materialize

from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.seeds import seeds
from dataset_assets.quality.hf_classifier import HFClassifier, HFScorerSpec
from tests.conftest import QUALITY, distinct_english
from tests.support.hf_models import two_shard_lake, write_bert

pytest.importorskip("transformers", reason="the Hugging Face scorer needs the cpu (or gpu) extra")


def test_regression_and_classification_scores_are_in_range_and_batching_does_not_change_them(tmp_path):
    texts = [distinct_english(i) for i in range(7)] + ["", "short"]
    reg = write_bert(tmp_path / "reg", 1)
    one = HFClassifier(HFScorerSpec(reg, score_range=(-1.0, 1.0), max_length=64, batch_size=1)).scores(texts)
    many = HFClassifier(HFScorerSpec(reg, score_range=(-1.0, 1.0), max_length=64, batch_size=4)).scores(texts)
    assert one.shape == (9,) and np.all((one >= 0) & (one <= 1))
    assert np.allclose(one, many, atol=1e-4)  # padding inside a batch does not move a document's score
    cls = write_bert(tmp_path / "cls", 2)
    high = HFClassifier(HFScorerSpec(cls, positive_label="high", max_length=64)).scores(texts)
    low = HFClassifier(HFScorerSpec(cls, positive_label="low", max_length=64)).scores(texts)
    assert high[7] == low[7] == 0.0 and one[7] == 0.0  # the empty document scores 0, it does not crash the batch
    has_text = [i for i in range(9) if i != 7]
    assert np.allclose(high[has_text] + low[has_text], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="is not a label of"):
        HFClassifier(HFScorerSpec(cls, positive_label="medium"))
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        HFClassifier(HFScorerSpec(str(tmp_path / "missing")))


def test_the_classifier_asset_calibrates_a_supplied_hf_model_and_seeds_use_it(tmp_path):
    lake = two_shard_lake(tmp_path / "lake")
    model = write_bert(tmp_path / "edu", 1)
    config = {
        "hf_model_path": model,
        "hf_score_range": [-1.0, 1.0],
        "hf_max_length": 64,
        "hf_batch_size": 16,
        "reference": str(QUALITY / "wikitext-2-valid.txt"),
        "min_crawl_documents": 50,
    }
    from dagster import DagsterInstance

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("crawl_shards", ["sa", "sb"])
    result = materialize(
        [quality_classifier],
        resources={"lake": lake},
        run_config={"ops": {"quality_classifier": {"config": config}}},
        instance=instance,
    )
    assert result.success
    calibration = lake.get_json(["quality_classifier", "calibration.json"])
    assert calibration["kind"] == "huggingface" and calibration["huggingface"]["path"] == model
    assert calibration["calibration_documents"] == 80 and len(calibration["quantiles"]) == 101
    assert calibration["by_crawl"]["CC-TEST"]["shards"] == 2  # one crawl over two shards: calibrated on its own
    assert not lake.exists(["quality_classifier", "model.bin"])  # the HF model stays where it is
    seeded = materialize(
        [seeds],
        resources={"lake": lake},
        partition_key="sa",
        instance=instance,
        run_config={"ops": {"seeds": {"config": {"top_fraction": 0.25}}}},
        selection=[seeds],
    )
    assert seeded.success
    table = lake.read_partition("seeds", {"shard": "sa"}).to_pylist()
    expected = HFClassifier(HFScorerSpec(model, score_range=(-1.0, 1.0), max_length=64)).scores(
        [r["text"] for r in table]
    )
    assert np.allclose([r["quality_score"] for r in table], expected, atol=1e-4)  # the seeds scored with the HF model
    assert 0 < sum(r["kept"] for r in table) < 40
    assert json.dumps(calibration)  # the calibration is plain JSON (no tuples or numpy types)
