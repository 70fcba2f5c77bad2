"""What a proxy is scored on: continuous likelihood metrics people trust at small scale.

- bits per byte on held-out text (Paloma's choice: tokenizer-free, so proxies with different
  tokenizers compare): the summed negative log-likelihood of the text's tokens, in bits, over its
  UTF-8 bytes. Documents are read in windows of `sequence_length` tokens, each scored once, each
  document opened by the end-of-document token as its context.
- BLiMP minimal pairs: a pair is right only when the good sentence is strictly more likely than
  the bad one (a tie is wrong); also the mean log-probability margin in bits, which moves long
  before accuracy leaves chance (DataDecide).
- multiple-choice questions (OLMES' ranked-classification form, as oe-eval/lm-eval score it): each
  answer's log-likelihood after the question; accuracy (the right answer strictly most likely, raw
  and per character of the answer) and the continuous metrics DataDecide found predictable at small
  scale: the right answer's probability among the answers, and its bits per byte.

`model(ids) -> logits` is any causal LM (a `transformers` model here).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

LN2 = math.log(2)
CHOICE_METRICS = ("accuracy", "accuracy_per_char", "correct_prob", "gold_bits_per_byte")


def _token_logprobs(model, ids: list[int], window: int) -> np.ndarray:
    """log P(ids[i] | ids[:i]) in nats for i >= 1, in windows of `window` predictions (each window's
    first token is context only, so every prediction is made once)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start : start + window + 1]], dtype=torch.long)
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            out.append(logp[0].gather(1, chunk[0, 1:].unsqueeze(1)).squeeze(1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def bits_per_byte(model, tokenizer, documents: list[str], window: int, max_bytes: int) -> dict:
    """{"bits_per_byte", "bytes", "tokens"} over the documents, read in order up to `max_bytes`."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    nats, n_bytes, n_tokens = 0.0, 0, 0
    for doc in documents:
        data = doc.encode("utf-8")[: max(0, max_bytes - n_bytes)]
        if not data:
            break
        text = data.decode("utf-8", errors="ignore")
        ids = [tokenizer.eos_id, *tokenizer.encode_batch([text])[0].tolist()]
        logp = _token_logprobs(model, ids, window)
        nats -= float(logp.sum())
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(ids) - 1
    if was_training:
        model.train()
    if n_bytes == 0:
        raise ValueError("no text to score")
    return {"bits_per_byte": nats / LN2 / n_bytes, "bytes": n_bytes, "tokens": n_tokens}


def sentence_logprobs(model, tokenizer, sentences: list[str], batch: int = 64) -> np.ndarray:
    """log2 P(sentence) for each sentence, given only the end-of-document token before it; batched
    with padding on the right (a causal model's earlier positions never see it)."""
    import torch

    encoded = [[tokenizer.eos_id, *ids.tolist()] for ids in tokenizer.encode_batch(sentences)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    scores = np.zeros(len(encoded))
    with torch.no_grad():
        for start in range(0, len(order), batch):
            group = [encoded[i] for i in order[start : start + batch]]
            width = max(len(ids) for ids in group)
            ids = torch.full((len(group), width), tokenizer.eos_id, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for i, row in enumerate(group):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            picked = logp[:, :-1].gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2) * mask[:, 1:]
            scores[order[start : start + len(group)]] = (picked.sum(dim=1) / LN2).numpy()
    return scores


def minimal_pairs(model, tokenizer, pairs: list[tuple[str, str, str]], window: int, limit: int) -> dict:
    """{"accuracy", "margin_bits", "pairs", "by_phenomenon"}: a pair counts when log P(good) > log P(bad)."""
    if hasattr(model, "eval"):
        model.eval()
    chosen = spread(pairs, limit)
    if not chosen:
        raise ValueError("no minimal pairs to score")
    good = sentence_logprobs(model, tokenizer, [p[0] for p in chosen])
    bad = sentence_logprobs(model, tokenizer, [p[1] for p in chosen])
    margins = good - bad
    by = defaultdict(lambda: [0, 0])
    for (_, _, phenomenon), margin in zip(chosen, margins):
        by[phenomenon][0] += bool(margin > 0)
        by[phenomenon][1] += 1
    return {
        "accuracy": float(np.mean(margins > 0)),
        "margin_bits": float(np.mean(margins)),
        "pairs": len(chosen),
        "by_phenomenon": {k: v[0] / v[1] for k, v in sorted(by.items())},
    }


def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], window: int, batch: int = 64) -> np.ndarray:
    """log2 P(continuation | end-of-document token + context) for each (context, continuation); the
    context is cut from the left so that the sequence fits `window` predictions."""
    import torch

    contexts = tokenizer.encode_batch([c for c, _ in pairs])
    answers = tokenizer.encode_batch([a for _, a in pairs])
    rows = []
    for ctx, ans in zip(contexts, answers):
        ans = ans.tolist()[-window:]
        keep = max(0, window - len(ans))
        rows.append(([tokenizer.eos_id, *ctx.tolist()][-(keep + 1) :], ans))
    order = sorted(range(len(rows)), key=lambda i: sum(map(len, rows[i])))
    scores = np.zeros(len(rows))
    with torch.no_grad():
        for start in range(0, len(order), batch):
            group = [rows[i] for i in order[start : start + batch]]
            width = max(len(c) + len(a) for c, a in group)
            ids = torch.full((len(group), width), tokenizer.eos_id, dtype=torch.long)
            scored = torch.zeros((len(group), width), dtype=torch.bool)  # positions whose token is the answer's
            for i, (c, a) in enumerate(group):
                ids[i, : len(c) + len(a)] = torch.tensor(c + a)
                scored[i, len(c) : len(c) + len(a)] = True
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
            picked = logp[:, :-1].gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2) * scored[:, 1:]
            scores[order[start : start + len(group)]] = (picked.sum(dim=1) / LN2).numpy()
    return scores


def multiple_choice(model, tokenizer, questions: list, window: int, limit: int) -> dict:
    """{"accuracy", "accuracy_per_char", "correct_prob", "gold_bits_per_byte", "questions"} over at most
    `limit` questions (spread over the set). A tie for the most likely answer counts as wrong."""
    if hasattr(model, "eval"):
        model.eval()
    chosen = spread(questions, limit)
    if not chosen:
        raise ValueError("no questions to score")
    logp = continuation_logprobs(model, tokenizer, [(q.context, c) for q in chosen for c in q.choices], window)
    right = right_per_char = prob = gold_bits = gold_bytes = 0.0
    at = 0
    for q in chosen:
        lp = logp[at : at + len(q.choices)]
        at += len(q.choices)
        per_char = lp / np.array([max(1, len(c)) for c in q.choices])
        right += _strict_best(lp, q.gold)
        right_per_char += _strict_best(per_char, q.gold)
        odds = np.exp2(lp - lp.max())
        prob += odds[q.gold] / odds.sum()
        gold_bits -= lp[q.gold]
        gold_bytes += len(q.choices[q.gold].encode("utf-8"))
    n = len(chosen)
    return {
        "accuracy": right / n,
        "accuracy_per_char": right_per_char / n,
        "correct_prob": prob / n,
        "gold_bits_per_byte": gold_bits / max(gold_bytes, 1),
        "questions": n,
    }


def _strict_best(values: np.ndarray, gold: int) -> bool:
    return bool(values[gold] > np.delete(values, gold).max())


def spread(pairs: list, limit: int) -> list:
    """At most `limit` pairs, taken evenly over the list (every phenomenon keeps its share)."""
    if len(pairs) <= limit:
        return list(pairs)
    step = len(pairs) / limit
    return [pairs[int(i * step)] for i in range(limit)]
