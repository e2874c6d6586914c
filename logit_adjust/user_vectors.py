"""User vectors: the normalized mean sentence embedding of a user's profile texts.

    profiles = [user_profile(spec, example) for example in examples]
    vectors = UserVectors(load_encoder("default")).vectors(profiles)   # FloatTensor [n, d], unit rows

A profile's texts are the registry's retrieval documents (``spec.document(item)``). Vectors are cached
in memory and on disk (``<cache_root>/user_vectors/<encoder>/<profile key>.pt``); the profile key
names the user and hashes the texts, so an edited profile is re-encoded, never served stale.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data.records import Example
from data.tasks import TaskSpec
from logit_adjust.cache import default_cache_root, digest, encoder_id, load_tensors, save_tensors


@dataclass(frozen=True)
class UserProfile:
    """One user's profile texts as one question saw them (a user's profile may differ between questions)."""

    user_id: str
    texts: tuple[str, ...]

    @property
    def key(self) -> str:
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", self.user_id)[:40]
        return f"{readable}-{digest([self.user_id, *self.texts])}"


def user_id_of(example: Example) -> str:
    """The question's user; LaMP user-based questions carry no user id, so the question id stands in."""
    return str(example.user_id if example.user_id is not None else example.id)


def user_profile(spec: TaskSpec, example: Example) -> UserProfile:
    texts = (spec.document(item).strip() for item in example.profile)
    return UserProfile(user_id=user_id_of(example), texts=tuple(text for text in texts if text))


class UserVectors:
    """Encode profiles once: memory, then disk, then the encoder (all missing profiles in one call)."""

    def __init__(self, encoder, cache_root: str | Path | None = None, batch_size: int = 64):
        self.encoder = encoder
        self.folder = Path(cache_root or default_cache_root()) / "user_vectors" / encoder_id(encoder)
        self.batch_size = batch_size
        self._memory: dict[str, object] = {}

    def vectors(self, profiles: Sequence[UserProfile]):
        """FloatTensor [len(profiles), d]: unit-norm mean of the L2-normalized text embeddings per profile
        (a zero row for a profile without text)."""
        import torch

        for profile in profiles:
            if profile.key not in self._memory:
                cached = load_tensors(self._path(profile))
                if cached is not None:
                    self._memory[profile.key] = cached
        missing = list({p.key: p for p in profiles if p.key not in self._memory}.values())
        if missing:
            self._encode(missing)
        if not profiles:
            return torch.empty(0, self.encoder.dim)
        return torch.stack([self._memory[profile.key] for profile in profiles])

    def _encode(self, profiles: list[UserProfile]) -> None:
        import torch

        texts = [text for profile in profiles for text in profile.texts]
        embeddings = (self.encoder.encode(texts, batch_size=self.batch_size, normalize=True, progress=True)
                      if texts else torch.empty(0, self.encoder.dim))
        start = 0
        for profile in profiles:
            rows = embeddings[start:start + len(profile.texts)]
            start += len(profile.texts)
            vector = (torch.nn.functional.normalize(rows.mean(0), dim=0) if len(rows)
                      else torch.zeros(self.encoder.dim))
            self._memory[profile.key] = vector
            save_tensors(vector, self._path(profile))

    def _path(self, profile: UserProfile) -> Path:
        return self.folder / f"{profile.key}.pt"
