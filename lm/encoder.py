"""Dense sentence encoder: masked mean pooling over any HF encoder (Contriever-style).

    enc = load_encoder()                                  # packaged all-MiniLM-L6-v2
    enc = load_encoder("facebook/contriever")             # any encoder folder or cached hub id
    vectors = enc.encode(texts, normalize=True)           # FloatTensor [len(texts), enc.dim] on CPU

For all-MiniLM-L6-v2, ``encode(..., normalize=True)`` equals sentence-transformers' output (same
truncation length, same pooling). Identical texts are encoded once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from lm.batching import length_sorted_batches, pad_batch
from lm.prompting import tokenize, tokenizer_limit
from lm.sources import loading_errors, resolve_source


class Encoder:
    def __init__(self, model, tokenizer, device, max_length: int | None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length

    @property
    def _pad_id(self) -> int:
        # Padded positions are masked out of attention and pooling, so any id works without a pad token.
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
               progress: bool = False):
        """Mean of the last hidden states over real (unpadded) tokens, one row per text, in input order."""
        import torch
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(texts))
        row_of = {text: row for row, text in enumerate(unique)}
        encoded = tokenize(self.tokenizer, unique, truncation=self.max_length is not None,
                           max_length=self.max_length)
        vectors = torch.empty(len(unique), self.dim)
        with torch.inference_mode(), tqdm(total=len(unique), desc="encode", unit="text",
                                          disable=not progress) as bar:
            for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
                input_ids, mask = pad_batch([encoded[i] for i in batch], self._pad_id, "right")
                hidden = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).last_hidden_state.float().cpu()
                vectors[batch] = mean_pool(hidden, mask)
                bar.update(len(batch))
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors[[row_of[text] for text in texts]]


def resolve_encoder(name: str, preferred: str) -> str:
    """``name``, except "auto": the ``preferred`` hub id when it is in the local Hugging Face cache (the
    reference's encoder), else "default" (the packaged all-MiniLM-L6-v2), so "auto" never downloads."""
    if name != "auto":
        return name
    from huggingface_hub import try_to_load_from_cache

    return preferred if isinstance(try_to_load_from_cache(preferred, "config.json"), str) else "default"


def mean_pool(hidden, attention_mask):
    """Masked mean of the last hidden states over the real tokens (Contriever's "average" pooling)."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def load_encoder(name_or_path: str | Path = "default", device=None, trust_remote_code: bool = False,
                 allow_download: bool = False, cache_dir: str | Path | None = None) -> Encoder:
    """'default' (packaged all-MiniLM-L6-v2), a local HF encoder folder, or a hub id in the local HF cache
    (``cache_dir``: that cache's folder, default HF's own)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lm.loading import resolve_device
    from lm.packaged import packaged_encoder_dir

    source = resolve_source(packaged_encoder_dir() if str(name_or_path) == "default" else name_or_path)
    device = resolve_device(device)
    options = source.load_options(trust_remote_code, allow_download, cache_dir)
    with loading_errors(source, allow_download):
        tokenizer = AutoTokenizer.from_pretrained(source.location, **options)
        # float32 whatever the checkpoint's dtype: encoders are small and half precision is slow on CPU.
        model = AutoModel.from_pretrained(source.location, dtype=torch.float32, **options)
    max_length = _max_length(Path(source.location), model.config, tokenizer)
    return Encoder(model.to(device).eval(), tokenizer, device, max_length)


def _max_length(folder: Path, config, tokenizer) -> int | None:
    """sentence-transformers' max_seq_length when the folder has one, else the model's position limit."""
    sbert_config = folder / "sentence_bert_config.json"
    if sbert_config.is_file():
        return json.loads(sbert_config.read_text())["max_seq_length"]
    limits = [limit for limit in (getattr(config, "max_position_embeddings", None), tokenizer_limit(tokenizer))
              if isinstance(limit, int)]
    return min(limits) if limits else None
