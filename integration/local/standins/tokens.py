"""The stand-in HMPPS Auth's signing keys, its client registration and the tokens it issues (RS256 JWTs)."""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_CLIENT_ID = "prison-case-notes-to-probation"
DEFAULT_CLIENT_SECRET = "secret"
DEFAULT_EXPIRES_IN = 1199
DEFAULT_AUTHORITIES: tuple[str, ...] = ("ROLE_PRISONER_CASE_NOTES__RO", "ROLE_PRISONER_ALERTS__RO")

CASE_NOTES_ROLES = frozenset(
    {
        "ROLE_PRISONER_CASE_NOTES__RO",
        "ROLE_PRISONER_CASE_NOTES__RW",
        "ROLE_PRISONER_CASE_NOTES__ADMIN",
        "ROLE_PRISONER_CASE_NOTES__SYNC__RW",
    }
)
ALERTS_ROLES = frozenset(
    {
        "ROLE_PRISONER_ALERTS__RO",
        "ROLE_PRISONER_ALERTS__RW",
        "ROLE_PRISONER_ALERTS__PRISONER_ALERTS_ADMINISTRATION_UI",
    }
)


@dataclass(frozen=True)
class AuthSettings:
    """The one registered client and what its tokens look like."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    expires_in: int = DEFAULT_EXPIRES_IN
    authorities: tuple[str, ...] = DEFAULT_AUTHORITIES
    scope: tuple[str, ...] = ("read", "write")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class _KeyPair:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> _KeyPair:
        return cls(kid=secrets.token_hex(8), private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "e": _b64url_uint(numbers.e),
            "use": "sig",
            "kid": self.kid,
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
        }


class InvalidToken(Exception):
    """The bearer token is missing, malformed, wrongly signed or expired."""


class TokenIssuer:
    """Issues and verifies the stand-in's JWTs. Thread-safe; ``rotate_keys`` invalidates every earlier token."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = settings or AuthSettings()
        self._settings = self._initial
        self._key = _KeyPair.generate()
        self._issued = 0
        self.issuer = "http://127.0.0.1/auth/issuer"

    @property
    def settings(self) -> AuthSettings:
        return self._settings

    def configure(self, **changes: Any) -> AuthSettings:
        """Change client id/secret, ``expires_in``, ``authorities`` or ``scope`` for tokens issued from now on."""
        for key in ("authorities", "scope"):
            if key in changes and changes[key] is not None:
                changes[key] = tuple(changes[key])
        changes = {k: v for k, v in changes.items() if v is not None}
        with self._lock:
            self._settings = replace(self._settings, **changes)
            return self._settings

    def reset(self) -> None:
        """Back to the settings given at start, and a zero count (keys are kept)."""
        with self._lock:
            self._settings = self._initial
            self._issued = 0

    def rotate_keys(self) -> None:
        key = _KeyPair.generate()
        with self._lock:
            self._key = key

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._issued

    def check_client(self, client_id: str | None, client_secret: str | None) -> bool:
        settings = self._settings
        return (
            client_id is not None
            and client_secret is not None
            and secrets.compare_digest(client_id.encode(), settings.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), settings.client_secret.encode())
        )

    def issue(
        self,
        *,
        authorities: list[str] | tuple[str, ...] | None = None,
        expires_in: int | None = None,
        client_id: str | None = None,
        count: bool = True,
    ) -> dict[str, Any]:
        """A token response as HMPPS Auth sends it (``access_token``, ``expires_in``, ``jti``, ...)."""
        settings = self._settings
        lifetime = settings.expires_in if expires_in is None else int(expires_in)
        subject = client_id or settings.client_id
        jti = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        claims = {
            "sub": subject,
            "client_id": subject,
            "grant_type": "client_credentials",
            "scope": list(settings.scope),
            "auth_source": "none",
            "authorities": list(settings.authorities if authorities is None else authorities),
            "iss": self.issuer,
            "exp": int(time.time()) + lifetime,
            "jti": jti,
        }
        with self._lock:
            key = self._key
            if count:
                self._issued += 1
        token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime,
            "scope": " ".join(settings.scope),
            "sub": subject,
            "auth_source": "none",
            "jti": jti,
            "iss": self.issuer,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.jwk()]}

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token, or ``InvalidToken`` (never echoing the token)."""
        key = self._key
        try:
            return jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=["RS256"],
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("token invalid") from None
