"""Ed25519 identities on disk: PEM files, optionally passphrase-encrypted, readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rantai.consensus.crypto import Signer, Verifier, key_id

from .errors import InvalidKey

__all__ = ["Signer", "Verifier", "generate", "key_id", "load_key", "public_key_hex", "save_key"]


def generate() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def save_key(signer: Signer, path: str | os.PathLike[str], passphrase: str | None = None) -> Path:
    """Write the private key as PKCS#8 PEM with mode 0600, encrypted when a passphrase is given.

    The file is created 0600 from the start (never world-readable, not even for a moment) and
    never overwritten: losing a key silently is worse than an error.
    """
    path = Path(path)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    pem = signer.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InvalidKey(f"key: {path} already exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def load_key(path: str | os.PathLike[str], passphrase: str | None = None) -> Signer:
    path = Path(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InvalidKey(f"key: cannot read {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except TypeError as exc:
        if passphrase:
            raise InvalidKey(f"key: {path} is not encrypted; do not give a passphrase") from exc
        raise InvalidKey(f"key: {path} is encrypted; a passphrase is needed") from exc
    except ValueError as exc:
        raise InvalidKey(f"key: {path} is not a PEM private key, or the passphrase is wrong") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"key: {path} holds a {type(key).__name__}, not an Ed25519 key")
    return Signer(key)


def public_key_hex(signer: Signer) -> str:
    return signer.public_key.hex()
