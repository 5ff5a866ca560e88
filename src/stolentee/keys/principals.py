"""API keys themselves: generated with their prefix, stored only as a hash, labelled for usage
counters; who a request is (the principal)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

KEY_PREFIX = "st_"


KEY_RANDOM_BYTES = 30  # 40 URL-safe base64 characters, 240 bits


ENV_LABEL_HASH_CHARS = 12


PrincipalSource = Literal["db", "env", "loopback"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``label`` keys usage and rate limits, ``premium`` selects the tier."""

    label: str
    name: str
    premium: bool
    source: PrincipalSource


LOOPBACK = Principal(label="loopback", name="loopback", premium=False, source="loopback")


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A database key as listed; never carries the key or its hash."""

    id: int
    name: str
    prefix: str
    premium: bool
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def label(self) -> str:
        return db_label(self.id)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def principal(self) -> Principal:
        return Principal(label=self.label, name=self.name, premium=self.premium, source="db")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Images served, input megapixels and the credits Remove.bg would have charged."""

    images: int = 0
    megapixels: float = 0.0
    credits: float = 0.0


@dataclass(frozen=True, slots=True)
class Usage:
    """A caller's usage today (UTC) and since it was first seen."""

    today: UsageTotals
    all_time: UsageTotals


def generate_key() -> str:
    """A new random API key: ``st_`` and 40 URL-safe characters."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as stored in ``api_keys.key_hash``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def db_label(key_id: int) -> str:
    return f"db:{key_id}"


def env_label(key: str) -> str:
    return f"env:{hash_key(key)[:ENV_LABEL_HASH_CHARS]}"
