"""Token maps: a per-user bias over the vocabulary, precomputed once per user.

Both maps score only "word-like" tokens, the pieces that start a word (decoded in running text it starts
with a space, and the rest is alphabetic and at least 2 characters), z-score the scores over those tokens
and leave every other token, special tokens included, at 0. Continuation pieces (``'itary'`` of
" military", ``'hook'`` of "webhook") stay at 0: the bias picks the word at its first piece and the model
finishes it. The cost: a word written without a space before it (the first word of an answer, a word
after a newline) is not boosted. Only the spread of a bias changes the softmax, and the raw scores sit in
a narrow, model-dependent band; z-scoring makes ``beta`` mean "logits per standard deviation" for any
map, encoder or tokenizer (spec profile_study B3/B4).

* ``sbert_vocab``: cosine between the user vector and each token string embedded once with the same
  sentence encoder (cached on disk per tokenizer + encoder).
* ``unigram``: the user's add-one-smoothed unigram log-ratio against the pooled profiles of all users,
  per token id, over the word-like tokens that occur in those profiles (unseen tokens carry no evidence).

    biases = user_biases("sbert_vocab", tokenizer, profiles, encoder=encoder)   # FloatTensor [n, len(tokenizer)]
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from data.errors import InputError
from logit_adjust.cache import default_cache_root, digest, encoder_id, load_tensors, save_tensors
from logit_adjust.user_vectors import UserProfile, UserVectors

TOKEN_MAPS = ("sbert_vocab", "unigram")
UNIGRAM_SMOOTHING = 1.0      # add-one: a token the user never wrote still gets a finite log-ratio
ENCODE_BATCH_SIZE = 512      # token strings are a few word pieces long, so large batches are cheap


def vocabulary(tokenizer) -> list[str]:
    """Every token id as it reads in running text: a word-start piece keeps its leading space.

    Each id is decoded after an anchor ("a") and the anchor's text is cut off, because SentencePiece
    tokenizers drop the space of a piece decoded on its own (``'▁hook'`` -> ``'hook'``), which would make
    word starts and continuation pieces indistinguishable.
    """
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
    anchor_text = tokenizer.decode(anchor)
    texts = tokenizer.batch_decode([[*anchor, token_id] for token_id in range(len(tokenizer))])
    return [text[len(anchor_text):] if text.startswith(anchor_text) else "" for text in texts]


def special_token_ids(tokenizer, model=None) -> list[int]:
    """EOS/PAD/BOS and every other special token of the tokenizer, plus the model's own EOS ids."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id) if i is not None)
    ids.update(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    return sorted(ids)


def is_word_like(text: str) -> bool:
    """A word-start piece of letters: one leading space, then at least 2 letters (see the module docstring)."""
    return text[:1] == " " and len(text) >= 3 and text[1:].isalpha()


def word_like_ids(tokenizer, strings: Sequence[str] | None = None):
    """LongTensor of the ids whose running-text string is word-like (special tokens never are)."""
    import torch

    strings = vocabulary(tokenizer) if strings is None else strings
    special = set(special_token_ids(tokenizer))
    return torch.tensor([i for i, text in enumerate(strings) if i not in special and is_word_like(text)],
                        dtype=torch.long)


def zscore_rows(values, ids, width: int):
    """[n, width] biases: each row of ``values`` (scores of ``ids``) z-scored, 0 at all other ids.

    A row with no spread (e.g. an empty profile) becomes all zeros: no evidence, no bias.
    """
    import torch

    mean = values.mean(dim=1, keepdim=True)
    std = values.std(dim=1, keepdim=True, correction=0)
    z = torch.where(std > 0, (values - mean) / std.clamp_min(1e-12), torch.zeros_like(values))
    biases = torch.zeros(values.shape[0], width)
    biases[:, ids] = z.float()
    return biases


# ----------------------------------------------------------------------------- sbert_vocab

_TOKEN_EMBEDDINGS: dict[Path, tuple] = {}


def token_embeddings(tokenizer, encoder, cache_root: str | Path | None = None):
    """(word-like ids, their unit-norm sentence embeddings [n, d] float16), computed once per
    tokenizer + encoder and cached on disk, keyed by the encoder and the (id, string) pairs embedded."""
    strings = vocabulary(tokenizer)
    ids = word_like_ids(tokenizer, strings)
    words = [strings[i].strip() for i in ids.tolist()]     # the space marks a word start; embed the word
    key = digest([encoder_id(encoder), *map(str, ids.tolist()), *words])
    path = Path(cache_root or default_cache_root()) / "token_embeddings" / f"{encoder_id(encoder)}-{key}.pt"
    if path in _TOKEN_EMBEDDINGS:
        return _TOKEN_EMBEDDINGS[path]
    cached = load_tensors(path)
    if cached is None:
        embeddings = encoder.encode(words, batch_size=ENCODE_BATCH_SIZE, normalize=True, progress=True).half()
        cached = {"ids": ids, "embeddings": embeddings}
        save_tensors(cached, path)
    _TOKEN_EMBEDDINGS[path] = (cached["ids"], cached["embeddings"])
    return _TOKEN_EMBEDDINGS[path]


def sbert_vocab_biases(tokenizer, profiles: Sequence[UserProfile], encoder, cache_root: str | Path | None = None):
    """[n, len(tokenizer)]: z-scored cosine(user vector, token embedding) over word-like tokens."""
    ids, embeddings = token_embeddings(tokenizer, encoder, cache_root)
    users = UserVectors(encoder, cache_root).vectors(profiles)
    cosines = users @ embeddings.float().T          # (n_users, n_word_like); both sides unit norm
    return zscore_rows(cosines, ids, len(tokenizer))


# ----------------------------------------------------------------------------- unigram

def unigram_biases(tokenizer, profiles: Sequence[UserProfile], background: Sequence[UserProfile]):
    """[n, len(tokenizer)]: z-scored log p_user(v) / p_all(v), add-one smoothed, over the word-like tokens
    that occur in the background (all users' profiles, each distinct profile counted once)."""
    import torch

    counts = _token_counts(tokenizer, [*background, *profiles])
    pooled = torch.stack([counts[key] for key in {p.key: p for p in background}]).sum(0)
    ids = word_like_ids(tokenizer)
    support = ids[pooled[ids] > 0]
    if len(support) == 0:
        return torch.zeros(len(profiles), len(tokenizer))
    user_counts = torch.stack([counts[p.key][support] for p in profiles]).double()
    pooled_counts = pooled[support].double()
    alpha, size = UNIGRAM_SMOOTHING, len(support)
    log_user = torch.log((user_counts + alpha) / (user_counts.sum(1, keepdim=True) + alpha * size))
    log_pooled = torch.log((pooled_counts + alpha) / (pooled_counts.sum() + alpha * size))
    return zscore_rows(log_user - log_pooled, support, len(tokenizer))


def _token_counts(tokenizer, profiles: Sequence[UserProfile]) -> dict:
    """Token id counts per distinct profile (texts tokenized without special tokens)."""
    import torch

    counts = {}
    for profile in {p.key: p for p in profiles}.values():
        ids = tokenizer(list(profile.texts), add_special_tokens=False)["input_ids"] if profile.texts else []
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long)
        counts[profile.key] = torch.bincount(flat, minlength=len(tokenizer))[:len(tokenizer)]
    return counts


def user_biases(token_map: str, tokenizer, profiles: Sequence[UserProfile], *, encoder=None,
                background: Sequence[UserProfile] = (), cache_root: str | Path | None = None):
    """The bias table [len(profiles), len(tokenizer)] of one token map (see the module docstring).

    ``encoder`` is required by sbert_vocab; ``background`` (default: ``profiles``) by unigram.
    """
    if token_map == "sbert_vocab":
        if encoder is None:
            raise ValueError("the sbert_vocab token map needs a sentence encoder")
        return sbert_vocab_biases(tokenizer, profiles, encoder, cache_root)
    if token_map == "unigram":
        return unigram_biases(tokenizer, profiles, background or profiles)
    raise InputError(f"unknown token map {token_map!r}; available: {', '.join(TOKEN_MAPS)}")


def top_tokens(bias_row, tokenizer, k: int = 10) -> list[tuple[str, float]]:
    """The k most boosted tokens of one user's bias row, as (decoded string, z-score)."""
    values, ids = bias_row.topk(k)
    return [(tokenizer.decode([i]), float(v)) for i, v in zip(ids.tolist(), values)]
