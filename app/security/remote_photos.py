"""Photos that chat requests give by http(s) URL, fetched under a strict policy.

The host is resolved once, here, and every address it resolves to must be
public (unless ``allow_private``); the refusal comes before any connection is
made. The connection then goes to a checked address, never to a second
resolution of the name, so DNS that answers differently a moment later
(rebinding) cannot reach an internal service; the Host header, TLS SNI and
certificate checks still use the name. Redirects are followed only within the
same host, at most ``max_redirects``. The body is read up to ``max_bytes``, and
the whole fetch, DNS included, ends within ``timeout_s``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from app.domain.errors import RemotePhotoRefused, RemotePhotoUnavailable
from app.security.pinned_http import pinned_transport
from retrieval.errors import PayloadTooLarge

if TYPE_CHECKING:
    from app.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

# Not public, beyond what ipaddress flags: carrier-grade NAT, IETF and benchmark
# ranges, and IPv6 ranges that older Pythons call global.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "169.254.0.0/16",  # link-local, with the cloud metadata address 169.254.169.254
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "64:ff9b:1::/48",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_USER_AGENT = "rapport-photo-fetcher/0.1"


@dataclass(frozen=True)
class RemotePhotoPolicy:
    """How photos given by URL are fetched; ``enabled=False`` refuses every URL."""

    enabled: bool = True
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 5.0
    allow_private: bool = False
    max_redirects: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> RemotePhotoPolicy:
        return cls(
            enabled=settings.remote_photos,
            max_bytes=settings.remote_photo_max_bytes or settings.max_image_bytes,
            timeout_s=settings.remote_photo_timeout_s,
            allow_private=settings.remote_photo_allow_private,
        )


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (an embedded IPv4 one counts too)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    flagged = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    listed = any(address in network for network in _NOT_PUBLIC)
    return address.is_global and not flagged and not listed


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def fetch_photo(url: str, policy: RemotePhotoPolicy, *, resolve: Resolver = resolve_host) -> bytes:
    """The body at ``url``, or a domain error: RemotePhotoRefused (the URL, its address or
    a redirect is not allowed), PayloadTooLarge (over ``policy.max_bytes``) or
    RemotePhotoUnavailable (no answer in time, unreachable, an HTTP error).
    """
    if not policy.enabled:
        raise RemotePhotoRefused(
            "this service does not fetch photos by URL; send them as data URLs "
            "(data:image/jpeg;base64,...) or base64"
        )
    deadline = time.monotonic() + policy.timeout_s
    target = _checked_url(url)
    host = target.host.lower()
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = _checked_addresses(host, port, policy, resolve, deadline)
    transport = pinned_transport(host, addresses, deadline)
    headers = {"User-Agent": _USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"}
    try:
        with httpx.Client(transport=transport, trust_env=False, headers=headers) as client:
            for _ in range(policy.max_redirects + 1):
                with client.stream("GET", target) as response:
                    if response.is_redirect:
                        target = _same_host_redirect(target, response, host)
                        continue
                    if not response.is_success:
                        raise RemotePhotoUnavailable(
                            f"the photo URL answered HTTP {response.status_code}"
                        )
                    return _read_capped(response, policy.max_bytes)
    except httpx.TimeoutException:
        raise _timed_out(policy) from None
    except httpx.HTTPError as error:
        raise RemotePhotoUnavailable(f"the photo could not be fetched: {_reason(error)}") from None
    raise RemotePhotoUnavailable(f"the photo URL redirects more than {policy.max_redirects} times")


def _checked_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        raise RemotePhotoRefused("the photo URL is not a valid URL") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise RemotePhotoRefused("photo URLs must be http(s)://host/...")
    if target.userinfo:
        raise RemotePhotoRefused("photo URLs must not carry credentials")
    return target


def _checked_addresses(
    host: str, port: int, policy: RemotePhotoPolicy, resolve: Resolver, deadline: float
) -> list[IPAddress]:
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a) for a in _resolve_by(host, port, resolve, deadline)]
    # An IPv4-mapped IPv6 address is reached over IPv4: check and connect to that.
    addresses = [getattr(a, "ipv4_mapped", None) or a for a in addresses]
    if not policy.allow_private:
        require_public(host, addresses)
    return addresses


def require_public(host: str, addresses: Sequence[IPAddress]) -> None:
    """Raise RemotePhotoRefused unless every one of ``host``'s ``addresses`` is public."""
    if not addresses or not all(is_public(address) for address in addresses):
        raise _not_public(host)


def _not_public(host: str) -> RemotePhotoRefused:
    # One answer for "resolves to a private address" and "does not resolve": two would
    # let a caller probe which internal host names exist.
    return RemotePhotoRefused(
        f"the photo URL's host {host!r} does not resolve to public addresses only; "
        "photos are fetched only from public addresses"
    )


def _resolve_by(host: str, port: int, resolve: Resolver, deadline: float) -> Sequence[str]:
    # getaddrinfo has no timeout of its own: it runs aside, and is abandoned at the deadline.
    outcome: list[Sequence[str] | OSError] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(resolve(host, port))
        except OSError as error:
            outcome.append(error)
        finally:
            done.set()

    threading.Thread(target=run, name="rapport-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise RemotePhotoUnavailable(f"the photo URL's host {host!r} did not resolve in time")
    result = outcome[0] if outcome else OSError("no answer")
    if isinstance(result, OSError) or not result:
        raise _not_public(host)
    return result


def _same_host_redirect(current: httpx.URL, response: httpx.Response, host: str) -> httpx.URL:
    location = response.headers.get("location", "")
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise RemotePhotoUnavailable("the photo URL redirects to an invalid URL") from None
    if target.scheme not in ("http", "https") or target.host.lower() != host:
        raise RemotePhotoRefused(
            f"the photo URL redirects to another host ({(target.host or str(target))!r}); "
            "redirects are followed only within the same host"
        )
    return target


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    too_large = PayloadTooLarge(f"the photo at the URL is over {max_bytes} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    # Raw bytes: a compressed body could inflate far past the cap within one chunk.
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _timed_out(policy: RemotePhotoPolicy) -> RemotePhotoUnavailable:
    return RemotePhotoUnavailable(f"the photo URL did not answer within {policy.timeout_s:g} s")


def _reason(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "could not connect"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server broke the HTTP protocol"
    return "the connection failed"
