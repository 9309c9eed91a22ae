"""Import from a URL: ``POST /files/`` with ``url=...`` makes the server fetch it.

Off unless ``url_import = on``. A server that fetches what it is told to is
a classic way into the network behind it (server-side request forgery), so:

- only http and https, no user name or password in the URL;
- only hosts listed in ``url_import_hosts`` (``*.example.org`` for
  subdomains, ``*`` for any);
- every address the host resolves to must be public: loopback, private,
  link-local, reserved, multicast and unspecified addresses (IPv4, IPv6 and
  IPv4 embedded in IPv6) are refused unless ``url_import_private = on``;
- the connection goes to the very address that was checked, so a second
  DNS answer (rebinding) cannot send it elsewhere; https still verifies the
  certificate for the host name;
- redirects are followed by hand, at most ``MAX_REDIRECTS``, each checked
  like the first URL;
- the body streams into the store, never held in memory, under
  ``url_import_max_size`` and ``url_import_timeout`` (total wall time); on
  any failure nothing is stored.

Standard library only (http.client, socket, ssl).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, unquote, urljoin, urlsplit

from bottle import request

from .config import Settings
from .errors import BadGateway, BadRequest, Error, Forbidden, TooLarge
from .store import FileInfo, Store, format_size, validate_name

MAX_REDIRECTS = 5
MAX_URL_LENGTH = 8192
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "fileserver-url-import"
# Upstream types that say nothing about the file: let the store guess from the name.
NO_OPINION_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
# Characters left as they are when a URL's path is made ASCII for the request line.
URL_SAFE = "/%:@!$&'()*+,;=?~-._"
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class UpstreamError(BadGateway):
    """The remote server failed us (an ``Error``, so the backends' error
    boundaries let it through untouched while the body streams)."""


class UpstreamTimeout(UpstreamError):
    status = 504


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # ASCII (IDNA), lowercase; an IP address in its compressed form
    port: int
    path: str  # path and query, ASCII, as sent in the request line


# -- checks ----------------------------------------------------------------------------


def parse_target(url: str, *, error: type[Error] = BadRequest, context: str = "") -> Target:
    """Split and check a URL; ``error`` when it cannot be fetched.

    ``error``/``context`` let a redirect's bad target be blamed on the
    remote server (``BadGateway``) rather than on the client.
    """
    def refuse(problem: str):
        raise error(f"{context}{problem}")

    if not url or len(url) > MAX_URL_LENGTH:
        refuse(f"The URL is empty or longer than {MAX_URL_LENGTH} characters.")
    if any(ch <= " " or ch == "\x7f" for ch in url):
        refuse(f"The URL {url!r} contains a space or control character; percent-encode it.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        refuse(f"The URL {url!r} is malformed ({exc}).")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        what = repr(scheme) if scheme else "a URL without a scheme"
        refuse(f"Only http and https URLs can be imported, not {what} ({url!r}).")
    if "@" in parts.netloc:
        refuse("The URL carries a user name or password; importing with credentials "
               "is not supported.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        refuse(f"The URL {url!r} has no host.")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            refuse(f"The host {host!r} is not a valid host name.")
    path = quote(parts.path or "/", safe=URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=URL_SAFE)
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), path)


def host_allowed(host: str, patterns) -> bool:
    """``host`` matches a name, ``*.domain`` (any subdomain) or ``*``."""
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        try:  # an address written differently (::0:1 vs ::1)
            if ipaddress.ip_address(pattern) == ipaddress.ip_address(host):
                return True
        except ValueError:
            pass
    return False


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (6to4, Teredo, NAT64, compatible)."""
    found = [ip.sixtofour, *(ip.teredo or ())]
    if ip in NAT64 or ip in IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def address_refusal(address: str) -> str | None:
    """Why ``address`` is no public internet address (e.g. "loopback"), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:a.b.c.d is a.b.c.d on the wire
        reason = address_refusal(str(ip.ipv4_mapped))
        return reason and f"{reason} (IPv4 {ip.ipv4_mapped} inside IPv6)"
    if ip.version == 6:
        for v4 in _embedded_ipv4(ip):
            reason = address_refusal(str(v4))
            if reason:
                return f"{reason} (IPv4 {v4} inside IPv6)"
    for reason, flag in [("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                         ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                         ("private", ip.is_private), ("reserved", ip.is_reserved)]:
        if flag:
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            raise UpstreamTimeout(f"Importing took longer than {self.seconds:g} s "
                                  f"(url_import_timeout) while {what}; nothing was stored.")


def resolve(target: Target, deadline: Deadline) -> list[tuple]:
    """getaddrinfo in a helper thread: it has no timeout of its own."""
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=lookup, name="url-import-dns", daemon=True)
    thread.start()
    thread.join(max(deadline.remaining(), 0))
    if not result:
        deadline.check(f"looking up {target.host}")
        raise UpstreamTimeout(f"Looking up {target.host} did not finish in time.")
    if isinstance(result[0], OSError):
        raise BadGateway(f"Cannot resolve the host {target.host!r}: {result[0]}.")
    return result[0]


def check_target(target: Target, settings: Settings, deadline: Deadline,
                 context: str = "") -> list[tuple]:
    """Allowed host and only allowed addresses; returns the addresses to connect to."""
    if not host_allowed(target.host, settings.url_import_hosts):
        listed = ", ".join(settings.url_import_hosts) or "none"
        raise Forbidden(f"{context}The host {target.host!r} is not allowed for importing; "
                        f"add it to url_import_hosts (now: {listed}).")
    addresses = resolve(target, deadline)
    if not settings.url_import_private:
        for *_, sockaddr in addresses:
            reason = address_refusal(sockaddr[0])
            if reason:
                raise Forbidden(f"{context}The host {target.host!r} has the address "
                                f"{sockaddr[0]}, which is {reason}; importing from it is "
                                "refused. Set url_import_private = on to allow loopback, "
                                "private and link-local addresses.")
    return addresses


# -- fetching --------------------------------------------------------------------------


def _connect(target: Target, addresses: list[tuple], deadline: Deadline) -> socket.socket:
    """Connect to one of the checked addresses (never a fresh DNS answer)."""
    errors = []
    for family, kind, proto, _, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(max(deadline.remaining(), 0.001))
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(f"{sockaddr[0]}: {exc.strerror or exc}")
            deadline.check(f"connecting to {target.host}")
            continue
        if target.scheme == "https":
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=target.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                deadline.check(f"starting TLS with {target.host}")
                raise UpstreamError(f"TLS with {target.host} failed: {exc}.") from None
        return sock
    raise UpstreamError(f"Cannot connect to {target.host} port {target.port} "
                        f"({'; '.join(errors)}).")


class Download:
    """The upstream response body as a file-like object for ``Store.put``.

    Each read waits at most until the deadline: a watchdog shuts the socket
    down then, so even a server that drips one byte a second is cut off.
    """

    def __init__(self, target: Target, conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, deadline: Deadline, max_size: int | None):
        self.target, self.conn, self.response, self.deadline = target, conn, response, deadline
        self.max_size = max_size
        self.length = _content_length(response)
        self.received = 0

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n is None or n < 0 else n
        data = bytearray()
        while len(data) < n:  # fill whole chunks: backends write them as they come
            self.deadline.check(f"downloading {self.target.url}")
            try:
                chunk = self.response.read1(n - len(data))
            except (OSError, http.client.HTTPException) as exc:
                self.deadline.check(f"downloading {self.target.url}")
                raise UpstreamError(f"Downloading {self.target.url} failed after "
                                    f"{self.received + len(data)} bytes ({exc or type(exc).__name__}); "
                                    "nothing was stored.") from None
            if not chunk:  # the end, unless the watchdog cut the socket off
                self.deadline.check(f"downloading {self.target.url}")
                break
            data += chunk
            if self.max_size is not None and self.received + len(data) > self.max_size:
                raise TooLarge(_too_large(self.target, self.max_size))
        self.received += len(data)
        if not data and self.length is not None and self.received < self.length:
            raise UpstreamError(f"{self.target.url} ended after {self.received} of "
                                f"{self.length} bytes; nothing was stored.")
        return bytes(data)

    def close(self) -> None:
        self.conn.close()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    if response.getheader("Transfer-Encoding"):
        return None
    try:
        length = int(response.getheader("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _too_large(target: Target, limit: int) -> str:
    return (f"{target.url} is larger than the import limit of {format_size(limit)} "
            f"({limit} bytes, url_import_max_size); nothing was stored.")


def _request(target: Target, sock: socket.socket, deadline: Deadline):
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock = sock  # already connected (and TLS-wrapped) to the checked address
    try:
        conn.request("GET", target.path, headers={
            "User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"})
        return conn, conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        deadline.check(f"waiting for {target.url}")
        raise UpstreamError(f"{target.url} gave no valid HTTP answer "
                            f"({exc or type(exc).__name__}).") from None


def open_url(url: str, settings: Settings, deadline: Deadline,
             watchdog: list[socket.socket]) -> tuple[Target, http.client.HTTPConnection,
                                                     http.client.HTTPResponse]:
    """GET ``url``, following redirects by hand; every hop is checked.

    The open socket is put in ``watchdog`` so the caller can cut it off
    at the deadline.
    """
    target = parse_target(url)
    context = ""
    for hop in range(MAX_REDIRECTS + 1):
        addresses = check_target(target, settings, deadline, context)
        sock = _connect(target, addresses, deadline)
        watchdog[:] = [sock]
        conn, response = _request(target, sock, deadline)
        location = response.getheader("Location")
        if response.status not in REDIRECTS or not location:
            return target, conn, response
        conn.close()
        if hop == MAX_REDIRECTS:
            raise UpstreamError(f"{url} redirected more than {MAX_REDIRECTS} times; "
                                "nothing was stored.")
        context = f"{target.url} redirected to {location}: "
        target = parse_target(urljoin(target.url, location), error=BadGateway, context=context)
    raise AssertionError("unreachable")


def _name_from_url(target: Target) -> str:
    path = urlsplit(target.url).path
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    name = name.replace("/", "_")  # an encoded %2F stays inside the one name
    return name if name not in ("", ".", "..") else "download"


def import_url(store: Store, url: str, *, put: Callable, name: str | None = None,
               folder: str = "") -> FileInfo:
    """Fetch ``url`` and store it as ``folder + (name or its last path segment)``
    with ``put(store, name, source, length=, content_type=)``, the routes' own
    store call (which checks who may replace a file); it is called before the
    first byte of the body is read."""
    settings: Settings = request.app.config["fileserver.settings"]
    if not settings.url_import:
        raise Forbidden("Importing from URLs is off; set url_import = on "
                        "(and url_import_hosts) to allow it.")
    url = (url or "").strip()
    if name:
        name = validate_name(folder + name)  # a bad name fails before any fetch
    deadline = Deadline(settings.url_import_timeout)
    watchdog: list[socket.socket] = []

    def cut_off() -> None:
        for sock in watchdog:
            try:  # the plain socket call: SSLSocket.shutdown would tear down TLS state
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(deadline.seconds, cut_off)
    timer.daemon = True
    timer.start()
    try:
        target, conn, response = open_url(url, settings, deadline, watchdog)
        try:
            if not 200 <= response.status < 300:
                raise BadGateway(f"{target.url} answered {response.status} "
                                 f"{response.reason}; nothing was stored.")
            limit = settings.url_import_max_size
            body = Download(target, conn, response, deadline, limit)
            if limit is not None and body.length is not None and body.length > limit:
                raise TooLarge(f"{target.url} is {body.length} bytes (Content-Length); "
                               f"the import limit is {format_size(limit)} ({limit} bytes, "
                               "url_import_max_size); nothing was stored.")
            ctype = response.getheader("Content-Type", "")
            if ctype.split(";")[0].strip().lower() in NO_OPINION_TYPES:
                ctype = None
            info, _ = put(store, name or folder + _name_from_url(target), body,
                          length=body.length, content_type=ctype)
            return info
        finally:
            conn.close()
    finally:
        timer.cancel()
