"""Where a webhook may be sent: no server-side request forgery.

An endpoint's URL must be https on a public address. It is checked when the endpoint is
registered, and again at every send on the very address the sender then connects to
(``resolve`` gives the checked addresses; ``campaigns.hook_delivery`` connects to one of
them, never resolving again), so a DNS answer that changes after the check (rebinding)
reaches nothing private. Refused: loopback, private, link-local (the cloud metadata
address 169.254.169.254), shared CGNAT space, multicast, reserved and unspecified
addresses, IPv4-mapped and other IPv6 forms of them, and numeric hosts written in
decimal, octal or hexadecimal (which resolvers read as addresses).
WEBHOOK_ALLOW_PRIVATE=1 lifts the address rules and allows http: for development and
tests, never in production.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

from crm.errors import Invalid

_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.I)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class Refused(Exception):
    """The address may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL: the Host header and the TLS server name
    port: int
    path: str  # with the query
    addresses: tuple[str, ...]  # resolved and checked


def allow_private() -> bool:
    return bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"])


def why_not(address: str) -> str | None:
    """Why an IP address may not be called (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = why_not(str(embedded))
            return f"{reason} (inside the IPv6 address {ip})" if reason else None
    checks = (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
              ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
              ("shared (CGNAT)", ip in _CGNAT if ip.version == 4 else False),
              ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("not public", not ip.is_global))
    for name, hit in checks:
        if hit:
            return f"{ip} is a {name} address"
    return None


def parse(url: str, allow: bool) -> tuple[str, str, int, str]:
    """Scheme, host, port and path of an endpoint URL, or Refused (``allow``: private
    addresses and http allowed)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"The URL is not valid: {exc}.") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("https", "http"):
        raise Refused("The URL must start with https://.")
    if scheme == "http" and not allow:
        raise Refused("Webhooks are sent over https only.")
    if not host:
        raise Refused("The URL has no host.")
    if parts.username or parts.password:
        raise Refused("The URL may not carry a user name or password.")
    if not allow:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if _NUMERIC_HOST.match(host):
                raise Refused(f"The host {host!r} is a number in a non-standard form "
                              "(decimal, octal or hexadecimal): write a public name or "
                              "address.") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def resolve_with(url: str, allow: bool) -> Target:
    """The URL's host resolved, every address checked (all must be allowed). Needs no
    app context (the delivery job's threads call it)."""
    scheme, host, port, path = parse(url, allow)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"The host {host!r} cannot be resolved ({exc}).") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in found))
    if not allow:
        for address in addresses:
            reason = why_not(address)
            if reason:
                raise Refused(f"The host {host!r} leads to {reason}: webhooks go to "
                              "public addresses only.")
    return Target(scheme, host, port, path, addresses)


def check_at_registration(url: str) -> None:
    try:
        resolve_with(url, allow_private())
    except Refused as exc:
        raise Invalid(str(exc), errors={"url": [str(exc)]}) from None
