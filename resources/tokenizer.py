"""The target model's tokenizer for unigram statistics: a Hugging Face tokenizer.json or a .tiktoken file."""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path
from typing import Optional, Protocol

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.hashing import file_sha256

# Llama-3's pre-tokenisation regex (Meta's tokenizer.py); .tiktoken files carry ranks only.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIAL_TOKENS = 256
_SPECIAL = re.compile(rb"^<\|[A-Za-z0-9_]+\|>$")


class Tokenizer(Protocol):
    name: str
    fingerprint: str  # content hash of the tokenizer file: count vectors of different tokenizers never mix
    vocab_size: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode_token(self, token_id: int) -> str: ...


def file_fingerprint(path: Path) -> str:
    return file_sha256(path)[:16]


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted: byte-level token strings back to bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class HuggingFaceTokenizer:
    """A Hugging Face tokenizer.json: the one wrapper the statistics, the mixture budgets and the
    engines' input limits all count with. The file is parsed on first use (a mixture whose token
    counts are all cached never needs it); its fingerprint is the file's content."""

    def __init__(self, path: Path):
        self._path = path
        self._loaded = None
        self.name = path.parent.name if path.name == "tokenizer.json" else path.stem
        self.fingerprint = file_fingerprint(path)

    @property
    def _tok(self):
        if self._loaded is None:
            from tokenizers import Tokenizer as _HF

            self._loaded = _HF.from_file(str(self._path))
        return self._loaded

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast skips offsets (tokenizers >= 0.20); ids are the same.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)

    def decode_token(self, token_id: int) -> str:
        text = self._tok.decode([token_id], skip_special_tokens=False)
        if "\ufffd" not in text:
            return text
        # A byte-level token holding part of a UTF-8 character: show its bytes instead of U+FFFD.
        piece, table = self._tok.id_to_token(token_id) or "", _byte_decoder()
        if piece and all(c in table for c in piece):
            return bytes(table[c] for c in piece).decode("utf-8", errors="backslashreplace")
        return text


def read_tiktoken_ranks(path: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    """Mergeable ranks and special tokens of a .tiktoken file (`<base64 token> <rank>` per line).

    Some exports list the special tokens (`<|...|>`) as ranks after the BPE merges; they are split off.
    """
    ranks: dict[bytes, int] = {}
    special: dict[str, int] = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token_b64, rank = line.split()
                token = base64.b64decode(token_b64)
                rank_int = int(rank)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: expected '<base64 token> <rank>', got {line[:80]!r}") from exc
            if _SPECIAL.match(token):
                special[token.decode()] = rank_int
            else:
                ranks[token] = rank_int
    return ranks, special


def llama3_special_tokens(first_id: int, count: int = LLAMA3_SPECIAL_TOKENS) -> dict[str, int]:
    named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|reserved_special_token_4|>",
        "<|eot_id|>",
    ]
    names = named[:count] + [f"<|reserved_special_token_{i}|>" for i in range(5, 5 + count - len(named[:count]))]
    return {name: first_id + i for i, name in enumerate(names)}


class TiktokenTokenizer:
    def __init__(self, path: Path, pattern: str, special_tokens: int):
        import tiktoken

        ranks, special = read_tiktoken_ranks(path)
        if not special and special_tokens:
            special = llama3_special_tokens(len(ranks), special_tokens)
        self.name = path.stem
        self.fingerprint = file_fingerprint(path)
        self._enc = tiktoken.Encoding(self.name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)
        self.vocab_size = self._enc.n_vocab

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(texts)

    def decode_token(self, token_id: int) -> str:
        return self._enc.decode_single_token_bytes(token_id).decode("utf-8", errors="backslashreplace")


def load_tokenizer(path: str, pattern: Optional[str] = None, special_tokens: int = LLAMA3_SPECIAL_TOKENS) -> Tokenizer:
    """A tokenizer.json, a model directory holding one (or a .tiktoken file), or a .tiktoken file."""
    p = Path(path).expanduser()
    if p.is_dir():
        candidates = [p / "tokenizer.json", *sorted(p.glob("*.tiktoken")), *sorted(p.glob("original/*.tiktoken"))]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"tokenizer path {path}: the directory holds no tokenizer.json and no *.tiktoken file"
            )
        p = found
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer path {path} does not exist: set the `tokenizer` resource's path")
    if p.suffix == ".tiktoken":
        return TiktokenTokenizer(p, pattern or LLAMA3_PATTERN, special_tokens)
    if p.suffix == ".json":
        return HuggingFaceTokenizer(p)
    raise ValueError(
        f"tokenizer path {path}: expected a Hugging Face tokenizer.json, a model directory or a .tiktoken file"
    )


class TokenizerResource(ConfigurableResource):
    """The target model's tokenizer; statistics count in its vocabulary."""

    path: str  # tokenizer.json, a model directory holding one, or a .tiktoken ranks file
    pattern: Optional[str] = None  # split regex for .tiktoken files; null means Llama-3's
    special_tokens: int = LLAMA3_SPECIAL_TOKENS  # added after the ranks of a .tiktoken file that lists none
    batch_size: int = 1024  # texts per encode_batch call
    prepare_default: bool = False  # `path` is the default generator's directory: prepare it on first use

    _loaded: Optional[Tokenizer] = PrivateAttr(default=None)

    def load(self) -> Tokenizer:
        if self._loaded is None:
            if self.prepare_default:
                from resources.default_model import prepare_model

                prepare_model(self.path)
            self._loaded = load_tokenizer(self.path, self.pattern, self.special_tokens)
        return self._loaded
