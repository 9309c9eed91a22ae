"""Who is asking, and may they: authentication, roles, CSRF and ownership.

Every request passes ``Auth.before_request`` (a Bottle hook), which finds the
user from, in this order, HTTP Basic, ``Authorization: Bearer <token>`` or
the session cookie of the login page, then applies the role rules:

    read   GET/HEAD/OPTIONS             reader, writer, admin
    write  PUT/POST/DELETE              writer, admin
    admin  any file or tile, any owner  admin

Clients without credentials get what ``[fileserver] anonymous`` allows. Unset,
that is ``write`` on a loopback address while no user exists (a first run just
works) and ``none`` otherwise; ``check_startup`` refuses a server on any other
address without users unless the operator chose a value.

Ownership: routes call ``check_may_change(owner)`` before replacing or
deleting; files without an owner (stored anonymously) may be changed by any
writer. A state change authenticated by the session cookie needs the CSRF
token (header ``X-CSRF-Token`` or a form field ``_csrf``, which in a
multipart form must be the first part, see ``uploads.iter_parts``).
Wrong credentials count against the client's address (``Throttle``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import time
from urllib.parse import quote

from bottle import redirect, request, response

from .accounts import Accounts, User
from .config import Settings
from .errors import (BadRequest, ConfigError, Error, Forbidden, TooManyRequests,
                     Unauthorized)
from .throttle import Throttle

COOKIE = "fileserver_session"
SESSION_SECONDS = 12 * 3600
SAFE = ("GET", "HEAD", "OPTIONS")
#: reachable without any right: the login page itself, stylesheets, the API description
PUBLIC = ("/login", "/logout", "/openapi.json")
REALM = 'Basic realm="fileserver", charset="UTF-8"'


@functools.lru_cache(maxsize=64)  # asked on every request: the address is parsed once
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def no_users_message(host: str, store_args: str = "") -> str:
    """Why a server on ``host`` without users refuses to start. ``store_args`` (the
    operator's quoted --config/--backend/--data-dir) make the suggested command add
    the user to the store this server would have used, not the default one."""
    return (f"anonymous: the server would listen on {host}, which is not loopback, and no "
            "user exists, so anyone who can reach it could write. Add a user (`fileserver "
            f"user add NAME --role admin{store_args}`) or set anonymous = none, read or write "
            "in [fileserver] to say what clients without credentials may do.")


class NoUsers(ConfigError):
    """``check_startup``'s refusal; ``fileserver serve`` words it again with its arguments."""

    def __init__(self, host: str):
        super().__init__(no_users_message(host))
        self.host = host


class Auth:
    """The app's authentication and rules; one per app (``app.config["fileserver.auth"]``)."""

    def __init__(self, settings: Settings, accounts: Accounts, throttle: Throttle):
        self.settings = settings
        self.accounts = accounts
        self.throttle = throttle
        self._key: bytes | None = None

    # -- policy ------------------------------------------------------------------------

    def anonymous(self) -> str:
        """What clients without credentials may do now: none, read or write."""
        if self.settings.anonymous:
            return self.settings.anonymous
        if is_loopback(self.settings.host) and not self.accounts.has_users():
            return "write"
        return "none"

    def accounts_in_use(self) -> bool:
        """Whether pages should offer a login (never fails: pages render on errors too)."""
        try:
            return self.accounts.has_users()
        except Error:
            return False

    def check_startup(self) -> None:
        """Refuse to serve a network address to everybody by accident."""
        if self.settings.anonymous or is_loopback(self.settings.host):
            return
        if self.accounts.has_users(max_age=0):
            return
        raise NoUsers(self.settings.host)

    # -- sessions ------------------------------------------------------------------------

    def _session_key(self) -> bytes:
        if self._key is None:
            self._key = self.accounts.session_key()
        return self._key

    def _sign(self, text: str) -> str:
        return hmac.new(self._session_key(), text.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, user: User) -> str:
        expires = int(time.time()) + SESSION_SECONDS
        name = base64.urlsafe_b64encode(user.name.encode()).decode()
        return f"{name}.{expires}.{self._sign(f'{user.name}|{expires}|{user.epoch}')}"

    def _from_cookie(self, value: str) -> User | None:
        try:
            encoded, expires, signature = value.split(".")
            name = base64.urlsafe_b64decode(encoded.encode()).decode()
            if int(expires) < time.time():
                return None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        user = self.accounts.get(name)
        if user is None or not hmac.compare_digest(
                signature, self._sign(f"{name}|{expires}|{user.epoch}")):
            return None
        return user

    def csrf_token(self, cookie: str) -> str:
        return self._sign(f"csrf|{cookie}")[:32]

    def set_session(self, user: User) -> None:
        cookie = self.session_cookie(user)
        response.set_cookie(COOKIE, cookie, path="/", httponly=True, samesite="lax",
                            max_age=SESSION_SECONDS, secure=request.urlparts.scheme == "https")

    # -- the hook ------------------------------------------------------------------------

    def _check_waiting(self, address: str) -> None:
        wait = self.throttle.wait(address)
        if wait:
            raise too_many(wait)

    def check_password(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None (counted against the
        client's address); 429 while that address must wait."""
        address = client_address()
        self._check_waiting(address)
        user = self.accounts.login(name, password)
        if user is None:
            self.throttle.failed(address)
        else:
            self.throttle.succeeded(address)
        return user

    def identify(self) -> tuple[User | None, str | None]:
        """(user, how) from the request's credentials; (None, None) without any.
        Wrong credentials are a 401 (429 when this address guessed too often)."""
        header = request.get_header("Authorization", "")
        cookie = request.get_cookie(COOKIE)
        if not header and not cookie:
            return None, None
        scheme, _, value = header.partition(" ")
        if header:
            address = client_address()
            self._check_waiting(address)  # before anything else: even a malformed try waits
            if scheme.lower() == "basic":
                try:
                    name, _, password = base64.b64decode(value.strip()).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    raise BadRequest("The Basic credentials are not base64 of "
                                     "NAME:PASSWORD.") from None
                user = self.check_password(name, password)
                if user is None:
                    raise unauthorized("Wrong user name or password.")
                return user, "basic"
            if scheme.lower() == "bearer":
                user = self.accounts.check_token(value.strip())
                if user is None:
                    self.throttle.failed(address)
                    raise unauthorized("The token is unknown or was revoked.")
                return user, "bearer"
            raise Unauthorized(f"Unsupported Authorization scheme {scheme!r}: "
                               "use Basic or Bearer.", **{"WWW-Authenticate": REALM})
        user = self._from_cookie(cookie)
        if user is None:  # expired or from before a password change: just not logged in
            response.delete_cookie(COOKIE, path="/")
            return None, None
        request.environ["fileserver.csrf"] = self.csrf_token(cookie)
        return user, "session"

    def before_request(self) -> None:
        env = request.environ
        user, how = self.identify()
        env["fileserver.user"], env["fileserver.auth"] = user, how
        path = request.path
        if path in PUBLIC or path.startswith("/static/"):
            return
        action = "read" if request.method in SAFE else "write"
        if user is None:
            if path.startswith("/account"):
                raise login_needed("Log in to see your account.")
            allowed = self.anonymous()
            if allowed == "write" or (allowed == "read" and action == "read"):
                return
            raise login_needed(f"Log in to {action} here: send HTTP Basic credentials "
                               "(curl -u NAME) or a token (-H 'Authorization: Bearer TOKEN').")
        if not user.can(action) and not path.startswith("/account"):
            raise Forbidden(f"{user.name} is a {user.role} and may not {action} here; "
                            "an admin can change the role.")
        if how == "session" and action == "write":
            check_csrf()


def client_address() -> str:
    """The peer's address. Not bottle's ``remote_addr``, which believes any
    client's X-Forwarded-For; behind a proxy, waitress's ``trusted_proxy``
    puts the real client here."""
    return request.environ.get("REMOTE_ADDR") or "?"


def unauthorized(message: str) -> Unauthorized:
    headers = {} if request.get_header("Sec-Fetch-Site") == "same-origin" \
        else {"WWW-Authenticate": REALM}  # no browser password dialog for a page's scripts
    return Unauthorized(message, **headers)


def too_many(wait: float) -> TooManyRequests:
    seconds = max(1, int(wait + 0.999))
    return TooManyRequests(f"Too many failed logins from this address; try again in "
                           f"{seconds} s.", **{"Retry-After": str(seconds)})


def login_needed(message: str) -> Unauthorized:
    """Browsers asking for a page go to the login page; others get 401."""
    from .web import wants_html

    if request.method in SAFE and wants_html():
        redirect("/login?next=" + quote(request.fullpath + (
            "?" + request.query_string if request.query_string else ""), safe="/"), 303)
    return unauthorized(message)


def check_csrf(sent: str | None = None) -> None:
    """The session's CSRF token must come with a state change: as ``sent``, in the
    ``X-CSRF-Token`` header or in an urlencoded ``_csrf`` field. A multipart form
    is checked by ``uploads.iter_parts`` (its first part), not read here."""
    expected = request.environ.get("fileserver.csrf")
    if expected is None:
        return
    if sent is None:
        sent = request.get_header("X-CSRF-Token")
    if sent is None:
        ctype = request.get_header("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            request.environ["fileserver.csrf_pending"] = True
            return
        if ctype == "application/x-www-form-urlencoded":
            sent = request.forms.get("_csrf")
    if not sent or not hmac.compare_digest(sent, expected):
        raise Forbidden("The form's CSRF token is missing or stale: reload the page "
                        "and try again.")


# -- for routes ----------------------------------------------------------------------------


def current_user() -> User | None:
    return request.environ.get("fileserver.user")


def check_may_change(owner: str | None, what: str) -> None:
    """Only the owner or an admin may replace or delete ``what``; files without an
    owner are anyone's who may write (the role rules already ran)."""
    if owner is None:
        return
    user = current_user()
    if user is None:
        raise unauthorized(f"{what} belongs to {owner}: log in as {owner} or as an admin "
                           "to change it.")
    if user.name != owner and not user.can("admin"):
        raise Forbidden(f"{what} belongs to {owner}; only {owner} or an admin may "
                        "change it.")


def owner_for(existing_owner: str | None = None) -> str | None:
    """The owner to record for a write: a replaced file keeps its owner."""
    if existing_owner is not None:
        return existing_owner
    user = current_user()
    return user.name if user else None
