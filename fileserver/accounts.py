"""Users, roles, passwords and API tokens: the collection ``accounts`` of the backend's documents.

    user:<name>     {"role", "password", "epoch", "created"}
    token:<id>      {"user", "sha256", "label", "created"}
    secret:session  {"key"}   the HMAC key of session cookies, made on first use

``user`` is indexed: a user's tokens are one ``find(user = name)``. The
users are read by walking the collection (it is small), which needs no
index, so a server whose database lacks one (an outdated CouchDB design
document) still knows whether anyone may write anonymously.

Passwords are stored only as salted scrypt hashes (hashlib, the standard
library). An API token is ``<id>.<secret>``: the id finds the record in one
lookup and only the secret's sha256 is stored (a 256-bit random secret needs
no slow hash). A user's ``epoch`` changes with the password, which ends every
session cookie signed with the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .documents import CollectionSpec, DocumentExists, Documents, retry_update

ROLES = ("reader", "writer", "admin")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD = 8
# scrypt at n=2**14, r=8: 16 MiB and about 50 ms per check, OWASP's floor.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
VERIFIED_TTL = 60.0  # seconds a checked (name, password) pair is remembered
COLLECTION = CollectionSpec("accounts", ("user",))


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str  # "scrypt$n$r$p$salt$hash"
    epoch: str
    created: str

    def can(self, action: str) -> bool:
        """``read``, ``write`` or ``admin``."""
        return ROLES.index(self.role) >= {"read": 0, "write": 1, "admin": 2}[action]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "password": self.password, "epoch": self.epoch,
                "created": self.created}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 2**20, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), maxmem=64 * 2**20, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise AccountError(f"{name!r} is not a user name: use 1-64 letters, digits, '.', '_' "
                           "or '-', starting with a letter or digit.")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"The password is too short: use at least {MIN_PASSWORD} characters.")
    if len(password) > 1024:
        raise AccountError("The password is longer than 1024 characters.")
    return password


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _user(name: str, doc: dict[str, Any]) -> User:
    return User(name=name, **{k: doc[k] for k in ("role", "password", "epoch", "created")})


class Accounts:
    """The accounts of one backend; thread-safe (the documents are)."""

    def __init__(self, documents: Documents):
        self.documents = documents
        documents.declare(COLLECTION.name, COLLECTION.indexed)
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._has_users: tuple[float, bool] = (0.0, False)

    def _get(self, key: str) -> dict[str, Any] | None:
        found = self.documents.get(COLLECTION.name, key)
        return found.body if found else None

    # -- users ----------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        if not NAME.fullmatch(name or ""):
            return None
        doc = self._get(f"user:{name}")
        return _user(name, doc) if doc else None

    def users(self) -> list[User]:
        return [_user(d.id.split(":", 1)[1], d.body) for d in self.documents.all(COLLECTION.name)
                if d.id.startswith("user:")]

    def has_users(self, max_age: float = 5.0) -> bool:
        """Whether any user exists, remembered for ``max_age`` seconds (asked on
        every anonymous request; another process may add the first user)."""
        checked, answer = self._has_users
        if time.monotonic() - checked > max_age:
            answer = bool(self.users())
            self._has_users = (time.monotonic(), answer)
        return answer

    def add(self, name: str, role: str, password: str) -> User:
        check_name(name)
        if role not in ROLES:
            raise AccountError(f"{role!r} is not a role: use one of {', '.join(ROLES)}.")
        user = User(name, role, hash_password(check_password(password)),
                    secrets.token_hex(8), _now())
        try:
            self.documents.create(COLLECTION.name, f"user:{name}", user.to_dict())
        except DocumentExists:
            raise AccountError(f"The user {name!r} exists already; "
                               "use `fileserver user passwd` to change the password.") from None
        self._has_users = (0.0, True)
        return user

    def _existing(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise AccountError(f"There is no user {name!r}; `fileserver user list` shows them.")
        return user

    def set_password(self, name: str, password: str) -> None:
        self._existing(name)
        hashed = hash_password(check_password(password))

        def change(doc):
            if doc is None:
                raise AccountError(f"The user {name!r} was removed meanwhile.")
            return {**doc, "password": hashed, "epoch": secrets.token_hex(8)}  # sessions end

        retry_update(self.documents, COLLECTION.name, f"user:{name}", change)

    def remove(self, name: str) -> None:
        self._existing(name)
        for token_id, _ in self.tokens(name):
            self.documents.delete(COLLECTION.name, f"token:{token_id}")
        self.documents.delete(COLLECTION.name, f"user:{name}")
        self._has_users = (0.0, False)

    def login(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None. A pair checked in the
        last minute is not hashed again (curl with Basic auth sends it on every
        request, and scrypt costs 50 ms by design)."""
        user = self.get(name)
        if user is None:
            hash_password(password[:1024])  # same time as a wrong password: no user probing
            return None
        key = hashlib.sha256(f"{name}\0{user.password}\0{password}".encode()).digest()
        now = time.monotonic()
        with self._lock:
            if self._verified.get(key, 0) > now:
                return user
        if not verify_password(password, user.password):
            return None
        with self._lock:
            if len(self._verified) > 1000:
                self._verified = {k: t for k, t in self._verified.items() if t > now}
            self._verified[key] = now + VERIFIED_TTL
        return user

    # -- API tokens -------------------------------------------------------------------

    def new_token(self, name: str, label: str = "") -> tuple[str, str]:
        """A new token for ``name``: (id, the token to show once)."""
        self._existing(name)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        self.documents.create(COLLECTION.name, f"token:{token_id}", {
            "user": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "label": label[:100], "created": _now()})
        return token_id, f"{token_id}.{secret}"

    def tokens(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        found = self.documents.find(COLLECTION.name, "user", [name])
        return sorted((d.id.split(":", 1)[1], d.body) for d in found if d.id.startswith("token:"))

    def revoke_token(self, name: str, token_id: str) -> bool:
        doc = self._get(f"token:{token_id}") if re.fullmatch(r"[0-9a-f]{16}", token_id) \
            else None
        if doc is None or doc.get("user") != name:
            return False
        return self.documents.delete(COLLECTION.name, f"token:{token_id}")

    def check_token(self, token: str) -> User | None:
        token_id, _, secret = token.partition(".")
        if not re.fullmatch(r"[0-9a-f]{16}", token_id) or not secret:
            return None
        doc = self._get(f"token:{token_id}")
        if doc is None:
            return None
        if not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), doc["sha256"]):
            return None
        return self.get(doc["user"])

    # -- the session key -------------------------------------------------------------

    def session_key(self) -> bytes:
        doc = self._get("secret:session")
        if doc is None:
            try:
                self.documents.create(COLLECTION.name, "secret:session",
                                      {"key": secrets.token_hex(32)})
            except DocumentExists:
                pass  # another process made it first: use theirs
            doc = self._get("secret:session")
        return bytes.fromhex(doc["key"])
