"""Access tokens: what verification refuses (tampering, expiry, audience, issuer,
``alg: none``, algorithm confusion, missing claims) and the key-file algorithms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from installsure.auth.interfaces import AuthenticationError
from installsure.auth.keys import KeyFileError, SigningKey, hmac_key, load_signing_key
from installsure.auth.tokens import (
    CLOCK_LEEWAY_SECONDS,
    REQUIRED_CLAIMS,
    VERIFIED_CACHE_SIZE,
    AccessTokens,
)

SECRET = "tests-only-signing-secret-0123456789abcdef-long-enough-for-hs512!"


def tokens(key: SigningKey | None = None, **kw: Any) -> AccessTokens:
    options: dict[str, Any] = {"issuer": "installsure", "audience": "installsure-api",
                               "ttl": 900}
    options.update(kw)
    return AccessTokens(key or hmac_key(SECRET), **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token put together by hand, as an attacker would."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign is not None else b""
    return f"{signing_input}.{b64(signature)}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "u1", "role": "admin", "sid": "s1", "jti": "j1", "iss": "installsure",
              "aud": "installsure-api", "iat": now, "exp": now + 900}
    claims.update(changes)
    return claims


def test_issued_token_round_trips_with_every_claim() -> None:
    """A token we issue verifies, and carries sub, role, sid, jti, iss, aud, iat, exp
    with a 15-minute lifetime."""
    signer = tokens()
    issued = signer.issue("user-1", "member", "session-1")
    claims = signer.verify(issued.token)
    assert (claims.user_id, claims.role, claims.session_id, claims.jti) == (
        "user-1", "member", "session-1", issued.jti)
    assert claims.expires_at - claims.issued_at == 900
    raw = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(raw) == set(REQUIRED_CLAIMS)
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_tampered_payload_and_signature_are_refused() -> None:
    """Changing one claim (role: member -> admin) or one signature byte fails, also
    once the genuine token has been verified (and remembered)."""
    signer = tokens()
    token = signer.issue("user-1", "member", "s").token
    assert signer.verify(token).role == "member"
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    promoted = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    other = "A" if signature[-2] != "A" else "B"
    flipped = f"{header}.{payload}.{signature[:-2]}{other}{signature[-1]}"
    for bad in (promoted, flipped, token + "x", "not-a-jwt", ""):
        with pytest.raises(AuthenticationError):
            signer.verify(bad)


def test_expired_wrong_audience_wrong_issuer_and_other_key_are_refused() -> None:
    """An expired token, one for another audience or issuer, and one signed with another
    secret all fail; so does a token whose role is not a known role."""
    past = tokens(clock=lambda: time.time() - 3600)
    cases = [
        past.issue("u", "member", "s").token,
        tokens(audience="another-api").issue("u", "member", "s").token,
        tokens(issuer="someone-else").issue("u", "member", "s").token,
        tokens(hmac_key("another-secret-0123456789abcdefghij")).issue("u", "member", "s").token,
        jwt.encode(good_claims(role="superuser"), SECRET, algorithm="HS256"),
    ]
    signer = tokens()
    for token in cases:
        with pytest.raises(AuthenticationError):
            signer.verify(token)


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    """A token verified once is remembered, and is checked for expiry on every use: past
    ``exp`` plus the leeway it fails (and is forgotten), before then it passes without
    its signature being checked again."""
    now = [time.time()]
    signer = tokens(clock=lambda: now[0], ttl=60)
    token = signer.issue("u", "member", "s").token
    decodes = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return real_decode(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jwt, "decode", counting_decode)
        assert signer.verify(token).user_id == "u"
        now[0] += 60 + CLOCK_LEEWAY_SECONDS - 1
        assert signer.verify(token).user_id == "u"
        assert len(decodes) == 1
        now[0] += 2
        with pytest.raises(AuthenticationError):
            signer.verify(token)
        with pytest.raises(AuthenticationError):
            signer.verify(token)


def test_the_remembered_tokens_stay_bounded() -> None:
    """However many distinct valid tokens arrive, at most VERIFIED_CACHE_SIZE are
    remembered, and each still verifies."""
    signer = tokens()
    issued = [signer.issue(f"u{n}", "member", f"s{n}").token
              for n in range(VERIFIED_CACHE_SIZE + 10)]
    assert [signer.verify(token).user_id for token in issued] == [
        f"u{n}" for n in range(len(issued))]
    assert len(signer._verified) <= VERIFIED_CACHE_SIZE


@pytest.mark.parametrize("missing", REQUIRED_CLAIMS)
def test_every_claim_is_required(missing: str) -> None:
    """A correctly signed token without one of the claims is refused."""
    claims = good_claims()
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        tokens().verify(token)


def test_alg_none_is_refused() -> None:
    """An unsigned token (``alg: none``), in any spelling, is refused even with valid
    claims; the same claims signed properly are accepted (the control)."""
    signer = tokens()
    for alg in ("none", "None", "NONE"):
        with pytest.raises(AuthenticationError):
            signer.verify(forge({"alg": alg, "typ": "JWT"}, good_claims()))
    control = forge({"alg": "HS256", "typ": "JWT"}, good_claims(),
                    lambda data: hmac.new(SECRET.encode(), data, hashlib.sha256).digest())
    assert signer.verify(control).user_id == "u1"


def test_hs256_signed_with_the_public_key_is_refused_by_an_rs256_server() -> None:
    """Algorithm confusion: a server signing RS256 refuses an HS256 token whose HMAC key
    is its own public key (which an attacker can know), in either PEM form."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = SigningKey("RS256", private, private.public_key())
    signer = tokens(key)
    assert signer.verify(signer.issue("u", "admin", "s").token).role == "admin"
    for form in (serialization.PublicFormat.SubjectPublicKeyInfo,
                 serialization.PublicFormat.PKCS1):
        pem = private.public_key().public_bytes(serialization.Encoding.PEM, form)
        forged = forge({"alg": "HS256", "typ": "JWT"}, good_claims(),
                       lambda data, pem=pem: hmac.new(pem, data, hashlib.sha256).digest())
        with pytest.raises(AuthenticationError):
            signer.verify(forged)


def test_an_hs256_server_refuses_other_algorithms() -> None:
    """A server pinned to HS256 refuses an RS256 or EdDSA token, validly signed by some
    key, and an HS512 token made with its own secret."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    signer = tokens()
    for token in (jwt.encode(good_claims(), rsa_key, algorithm="RS256"),
                  jwt.encode(good_claims(), ed_key, algorithm="EdDSA"),
                  jwt.encode(good_claims(), SECRET, algorithm="HS512")):
        with pytest.raises(AuthenticationError):
            signer.verify(token)


def _openssl_key(tmp_path: Path, *args: str) -> Path:
    path = tmp_path / "key.pem"
    subprocess.run(["openssl", "genpkey", *args, "-out", str(path)], check=True,
                   capture_output=True)
    return path


def test_eddsa_and_rs256_from_key_files(tmp_path: Path) -> None:
    """Keys made with openssl load for their algorithm and sign tokens that verify,
    while a token of the one algorithm fails on a server of the other."""
    (tmp_path / "ed").mkdir()
    (tmp_path / "rsa").mkdir()
    ed_file = _openssl_key(tmp_path / "ed", "-algorithm", "ed25519")
    rsa_file = _openssl_key(tmp_path / "rsa", "-algorithm", "RSA",
                            "-pkeyopt", "rsa_keygen_bits:2048")
    ed = tokens(load_signing_key(ed_file, "EdDSA"))
    rs = tokens(load_signing_key(rsa_file, "RS256"))
    ed_token = ed.issue("u", "viewer", "s").token
    rs_token = rs.issue("u", "viewer", "s").token
    assert ed.verify(ed_token).role == "viewer"
    assert rs.verify(rs_token).role == "viewer"
    assert jwt.get_unverified_header(ed_token)["alg"] == "EdDSA"
    with pytest.raises(AuthenticationError):
        ed.verify(rs_token)
    with pytest.raises(AuthenticationError):
        rs.verify(ed_token)


def test_key_files_that_do_not_fit_are_refused_with_a_reason(tmp_path: Path) -> None:
    """A missing file, a file that is no key, a key of the other kind and a short RSA
    key each raise KeyFileError saying what is wrong."""
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signing_key(tmp_path / "absent.pem", "EdDSA")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signing_key(junk, "EdDSA")
    ed_file = tmp_path / "ed.pem"
    ed_file.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="not an RSA key"):
        load_signing_key(ed_file, "RS256")
    small = tmp_path / "small.pem"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small.write_bytes(weak.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="at least 2048"):
        load_signing_key(small, "RS256")
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_signing_key(small, "EdDSA")
