"""Sealing personal fields with a per-pupil AES-256-GCM key.

The nonce is random per value; the associated data binds each sealed value to
its pupil and event, so a sealed value copied into another event (or another
pupil's stream) fails to open instead of showing the wrong person's data.
"""

from __future__ import annotations

import binascii
import os
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from senflow.events.personal import SEALED_KEY, Redacted

KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT = "v1"  # token prefix, so the sealing scheme can change later


class VaultError(RuntimeError):
    pass


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _aad(stream_id: UUID | str, event_id: UUID | str) -> bytes:
    return f"{stream_id}:{event_id}".encode()


def sealer(key: bytes, stream_id: UUID, event_id: UUID) -> Any:
    return stream_sealer(key, stream_id)(event_id)


def stream_sealer(key: bytes, stream_id: UUID | str) -> Any:
    """``sealer`` for many events of one pupil: the cipher is set up once, not per event
    (bulk import seals hundreds of thousands of events). Ids may come as text."""
    aead = AESGCM(key)

    def for_event(event_id: UUID | str) -> Any:
        aad = _aad(stream_id, event_id)

        def seal(plain: Any) -> dict[str, str]:
            nonce = os.urandom(_NONCE_BYTES)
            blob = aead.encrypt(nonce, str(plain).encode(), aad)
            # base64.b64encode without its Python wrapper
            text = binascii.b2a_base64(nonce + blob, newline=False).decode()
            return {SEALED_KEY: f"{_FORMAT}:{text}"}

        return seal

    return for_event


def stream_opener(key: bytes | None, stream_id: UUID) -> Any:
    """For each event of one pupil, an ``open`` for pydantic's context: plaintext, or
    Redacted once the key is gone (the cipher is set up once for the pupil)."""
    if key is None:
        return lambda _event_id: lambda _token: Redacted.model_construct()
    aead = AESGCM(key)

    def for_event(event_id: UUID) -> Any:
        aad = _aad(stream_id, event_id)  # once per event, not per sealed value

        def open_(token: dict[str, str]) -> Any:
            fmt, _, payload = token[SEALED_KEY].partition(":")
            if fmt != _FORMAT:
                raise VaultError(f"unknown sealed format {fmt!r}")
            raw = binascii.a2b_base64(payload)  # base64.b64decode, without its Python wrapper
            try:
                return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad).decode()
            except InvalidTag as exc:
                raise VaultError(f"sealed value of event {event_id} does not open") from exc

        return open_

    return for_event


def withheld(_token: dict[str, str]) -> Redacted:
    """An ``open`` that shows no personal data, for readers that must not see it."""
    return Redacted.model_construct(marker="[personal data withheld]")
