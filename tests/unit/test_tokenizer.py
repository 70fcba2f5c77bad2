"""The tokenizer resource on the real GPT-2 tokenizer.json and Llama-3 .tiktoken files."""

from __future__ import annotations

import base64
import shutil

import pytest

from resources.tokenizer import TokenizerResource, read_tiktoken_ranks
from tests.conftest import SHARED

TOKENIZERS = SHARED / "tokenizers"
GPT2 = TOKENIZERS / "gpt2-tokenizer.json"
LLAMA3 = TOKENIZERS / "llama-3.tiktoken"


@pytest.mark.parametrize(
    "path, vocab, hello_world",
    [(GPT2, 50_257, [15496, 995]), (LLAMA3, 128_256, [9906, 1917])],
    ids=["gpt2-json", "llama3-tiktoken"],
)
def test_hello_world_round_trips_with_the_known_vocabulary(path, vocab, hello_world):
    tok = TokenizerResource(path=str(path)).load()
    assert tok.vocab_size == vocab
    ids = tok.encode_batch(["Hello world", "", "Hello world"])
    assert ids == [hello_world, [], hello_world]
    assert "".join(tok.decode_token(i) for i in ids[0]) == "Hello world"


@pytest.mark.parametrize("path", [GPT2, LLAMA3], ids=["gpt2-json", "llama3-tiktoken"])
def test_special_token_text_is_encoded_as_ordinary_text(path):
    tok = TokenizerResource(path=str(path)).load()
    text = "<|endoftext|> <|begin_of_text|>"
    ids = tok.encode_batch([text])[0]
    assert len(ids) > 2 and "".join(tok.decode_token(i) for i in ids) == text


def test_llama3_ranks_file_lists_its_special_tokens_after_the_128000_merges():
    ranks, special = read_tiktoken_ranks(LLAMA3)
    assert len(ranks) == 128_000 and len(special) == 256
    assert special["<|begin_of_text|>"] == 128_000 and max(special.values()) == 128_255


def test_ranks_file_without_special_tokens_gets_llamas_256_reserved_ones(tmp_path):
    merges_only = tmp_path / "merges.tiktoken"
    with open(LLAMA3, "rb") as src, open(merges_only, "wb") as dst:
        for line in src:
            if not base64.b64decode(line.split()[0]).startswith(b"<|"):
                dst.write(line)
    tok = TokenizerResource(path=str(merges_only)).load()
    assert tok.vocab_size == 128_256
    assert tok.decode_token(128_000) == "<|begin_of_text|>" and tok.decode_token(128_009) == "<|eot_id|>"
    assert tok.encode_batch(["Hello world"]) == [[9906, 1917]]


def test_a_model_directory_loads_its_tokenizer_json(tmp_path):
    model = tmp_path / "gpt2"
    model.mkdir()
    shutil.copy(GPT2, model / "tokenizer.json")
    tok = TokenizerResource(path=str(model)).load()
    assert tok.name == "gpt2" and tok.vocab_size == 50_257


def test_partial_utf8_tokens_decode_to_their_bytes_not_replacement_characters():
    tok = TokenizerResource(path=str(GPT2)).load()
    pieces = [tok.decode_token(i) for i in tok.encode_batch(["日本"])[0]]
    assert all("\ufffd" not in p for p in pieces) and any("\\x" in p for p in pieces)


def test_a_custom_split_pattern_changes_the_tiktoken_segmentation():
    words_only = TokenizerResource(path=str(LLAMA3), pattern=r"\S+|\s+").load()
    default = TokenizerResource(path=str(LLAMA3)).load()
    # Llama-3's pattern glues the space to the word; a split at every space cannot.
    assert len(default.encode_batch(["Hello world"])[0]) == 2
    assert len(words_only.encode_batch(["Hello world"])[0]) == 3


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing.json", "does not exist"),
        (lambda d: d, "no tokenizer.json"),
        (lambda d: (d / "vocab.txt").write_text("x") and d / "vocab.txt", "expected a Hugging Face tokenizer.json"),
    ],
    ids=["missing-file", "empty-directory", "unknown-format"],
)
def test_bad_paths_are_refused_with_the_path_and_what_is_expected(tmp_path, setup, message):
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        TokenizerResource(path=str(setup(tmp_path))).load()


def test_broken_tiktoken_line_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-a-rank-line\n")
    with pytest.raises(ValueError, match=r"bad.tiktoken:2"):
        TokenizerResource(path=str(bad)).load()
