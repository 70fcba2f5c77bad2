"""HTML bytes to clean text: charset detection, main-content extraction, Unicode normalisation."""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from typing import Optional

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
_WORDLESS = re.compile(r"[\W_]+", re.UNICODE)


def known_charset(name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None  # an unknown charset label falls back to detection


def decode_html(payload: bytes, declared_charset: Optional[str]) -> str:
    """Decode with the declared charset when Python knows it, else a detected one; never raises."""
    encoding = known_charset(declared_charset) or known_charset(detect_encoding(payload[:65536])) or "utf-8"
    try:
        return bytes_to_str(payload, encoding)
    except (LookupError, UnicodeError):
        return payload.decode("utf-8", "replace")


def html_to_text(payload: bytes, declared_charset: Optional[str] = None) -> str:
    html = decode_html(payload, declared_charset)
    tree = HTMLTree.parse(html)
    return extract_plain_text(tree, main_content=True, preserve_formatting=True, alt_texts=False, list_bullets=True)


def normalise_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def cap_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut an enormous document at a whitespace boundary before `max_chars`."""
    if len(text) <= max_chars:
        return text, False
    cut = text.rfind(" ", int(max_chars * 0.9), max_chars)
    return text[: cut if cut > 0 else max_chars], True


def fold(text: str) -> str:
    """Case, punctuation and white space folded away: what exact and near-duplicate removal compare."""
    return _WORDLESS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(text: str) -> str:
    """Hash of the folded text: near-verbatim copies collide."""
    return folded_hash(fold(text))


def folded_hash(folded: str) -> str:
    """content_hash of text already folded (callers that need the folded text too fold once)."""
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=8).hexdigest()


def stable_id(shard: str, record_key: str) -> str:
    return hashlib.blake2b(f"{shard}\x00{record_key}".encode("utf-8"), digest_size=8).hexdigest()
