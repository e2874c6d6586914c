"""The one in-memory record type shared by every loader, converter and method."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Example:
    """One question of one user: its input, its gold output (None when hidden) and the user's profile."""

    id: str
    input: str
    profile: list[dict] = field(default_factory=list)
    target: str | None = None
    user_id: str | None = None
    task: str | None = None
    extra: dict = field(default_factory=dict)   # other fields of the source record, kept for round trips

    def to_dict(self) -> dict:
        return asdict(self)
