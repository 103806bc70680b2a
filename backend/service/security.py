"""The service's access token: random, made at first start, kept in ``<data-dir>/token`` (mode 0600)."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)
MIN_TOKEN_LENGTH = 32


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, made (atomically, 0600) when missing or unusable; loose permissions are tightened."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeDecodeError) as error:
        log.warning("token file %s is unreadable (%s): making a new token", path, error)
        token = ""
    if len(token) >= MIN_TOKEN_LENGTH and token.isprintable():
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("token file %s was readable by others: permissions set to 0600", path)
            os.chmod(path, 0o600)
        return token
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <expected>`` (constant-time comparison)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected.encode("ascii"))
