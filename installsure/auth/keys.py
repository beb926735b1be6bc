"""The key access tokens are signed and verified with, from the settings.

HS256 signs and verifies with one shared secret. EdDSA (Ed25519) and RS256 sign with a
private key read from a PEM file and verify with its public half, so a service that
only checks tokens could be given the public key alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import frozen

#: Shortest RSA modulus accepted; 2048 bits is the floor of current guidance.
MIN_RSA_BITS = 2048


class KeyFileError(ValueError):
    """The key file is missing, unreadable or not a key of the configured algorithm."""


@frozen
class SigningKey:
    """What PyJWT signs with (``private``) and verifies with (``public``)."""

    algorithm: str
    private: Any
    public: Any


def hmac_key(secret: str) -> SigningKey:
    return SigningKey(algorithm="HS256", private=secret, public=secret)


def load_signing_key(path: Path, algorithm: str) -> SigningKey:
    """The private key in ``path`` (PEM, unencrypted) for ``algorithm``."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(
            f"cannot read {str(path)!r} ({error.strerror or error}); it must be a PEM private "
            "key this user can read"
        ) from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(
            f"{str(path)!r} is not an unencrypted PEM private key ({error}); make one with "
            "`openssl genpkey -algorithm ed25519 -out jwt-key.pem`"
        ) from None
    if algorithm == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyFileError(f"{str(path)!r} is not an Ed25519 key, which EdDSA needs")
    elif algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError(f"{str(path)!r} is not an RSA key, which RS256 needs")
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(
                f"{str(path)!r} is a {key.key_size}-bit RSA key; RS256 needs at least "
                f"{MIN_RSA_BITS} bits"
            )
    else:
        raise KeyFileError(f"algorithm {algorithm!r} does not use a key file")
    return SigningKey(algorithm=algorithm, private=key, public=key.public_key())
