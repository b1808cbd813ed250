"""The policy for URLs an admin sets in a plugin's settings through the API.

A field a plugin marks :class:`~llmops.plugins.fields.ToolUrl` is checked before anything
is stored (:func:`url_problem`): the scheme must be one the field declares; a URL without
a host names the server's own disk and is refused (the environment sets it); a password
in the URL is refused (it would be stored and shown in clear); and, unless the URL is only
a link or names a cloud store's bucket, its host must not be, or resolve to, an address of
the server's own networks (:data:`INTERNAL_NETWORKS`: loopback, link-local with the cloud
metadata service, private, carrier-grade NAT, unspecified, multicast, reserved) unless
the allow-list (``LLMOPS_INTEGRATION_URL_ALLOWLIST``) names the host or its address.

A host that does not resolve is refused: it cannot be checked, and the address it gets
later could be any. A name on the allow-list is taken without resolving it, for hosts
only the tool's network knows (an in-cluster Service that training jobs reach).

The check runs when the setting changes, not on every connection: a host whose DNS
answer changes later (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

from llmops.plugins.fields import ToolUrl

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

#: Networks of the server's own surroundings, with what they are (for the 422's reason).
INTERNAL_NETWORKS: tuple[tuple[IpNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), what)
    for cidr, what in (
        ("127.0.0.0/8", "a loopback address"),
        ("::1/128", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
        ("fe80::/10", "a link-local address (cloud metadata services live there)"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a private address (carrier-grade NAT)"),
        ("fc00::/7", "a private address (unique local)"),
        ("fec0::/10", "a private address (site-local)"),
        ("0.0.0.0/8", "an unspecified address (this host)"),
        ("::/128", "an unspecified address (this host)"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

#: How long resolving a host may take before the URL is refused.
RESOLVE_TIMEOUT_SECONDS = 3.0

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_-]{1,63})*$"
)


@dataclass(frozen=True)
class Allowlist:
    """Hosts and networks an admin may point integrations at although they are internal:
    exact host names, ``*.suffix`` for every name below a domain, IP addresses and
    CIDRs, comma-separated (``LLMOPS_INTEGRATION_URL_ALLOWLIST``)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Allowlist:
        """The allow-list ``value`` describes; ``ValueError`` names an entry that is
        neither a host name, a ``*.`` suffix, an address nor a CIDR."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IpNetwork] = []
        for raw in re.split(r"[,\s]+", value):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*.") and _HOSTNAME.match(entry[2:]):
                suffixes.append(entry[1:])
            elif _HOSTNAME.match(entry):
                names.add(entry)
            else:
                raise ValueError(
                    f"{raw!r} is not a host name, a '*.domain', an IP address or a CIDR"
                )
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def names_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def covers(self, address: IpAddress) -> bool:
        address = _unmapped(address)
        return any(
            address in network for network in self.networks if network.version == address.version
        )


def check_allowlist(value: str) -> str:
    """``value`` unchanged when it parses as an :class:`Allowlist` (a settings validator)."""
    Allowlist.parse(value)
    return value


#: The type of the core setting that holds the allow-list: refused at start when an
#: entry does not parse.
AllowlistSetting = Annotated[str, AfterValidator(check_allowlist)]


def internal_network(address: IpAddress) -> str | None:
    """What internal network ``address`` is in (an IPv4-mapped IPv6 address as its IPv4
    one), or None for a public address."""
    address = _unmapped(address)
    for network, what in INTERNAL_NETWORKS:
        if network.version == address.version and address in network:
            return what
    return None


def resolve_host(host: str, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> list[str]:
    """Every address ``host`` resolves to, or ``[]`` when it resolves to none in time."""
    found: list[str] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return
        found.extend(str(info[4][0]) for info in infos)

    worker = threading.Thread(target=lookup, name="llmops-url-policy", daemon=True)
    worker.start()
    worker.join(timeout)
    return [] if worker.is_alive() else sorted(set(found))


def _unmapped(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _scheme_allowed(scheme: str, declared: Iterable[str]) -> bool:
    return scheme in declared or scheme.split("+", 1)[0] in declared


def url_problem(
    value: object,
    rule: ToolUrl,
    allowlist: Allowlist,
    *,
    resolve: Resolver = resolve_host,
) -> str | None:
    """Why ``value`` may not be set through the API for a field marked ``rule``, or None.

    A value that is not a string is left to the settings model's own validation.
    """
    if not isinstance(value, str):
        return None
    if any(c.isspace() or not c.isprintable() for c in value):
        return "a URL without spaces or control characters is expected"
    bare = rule.bare_address and "://" not in value
    try:
        parts = urlsplit(f"//{value}" if bare else value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if not bare and not scheme:
        return "a path on the server's disk: only the environment may set one"
    if not bare and not _scheme_allowed(scheme, rule.schemes):
        return f"the scheme {scheme!r} is not allowed here (allowed: {', '.join(rule.schemes)})"
    host = parts.hostname
    if not host:
        if scheme in ("http", "https") or bare or rule.link:
            return "a URL with a host is expected"
        return "a path on the server's disk: only the environment may set one"
    if parts.password is not None:
        return "a password in the URL would be stored and shown in clear: use a secret setting"
    if rule.link or _scheme_allowed(scheme, rule.bucket_schemes):
        return None
    if allowlist.names_host(host):
        return None
    literal = _address(host)
    if literal is not None:
        addresses = [literal]
    else:
        resolved = [a for a in (_address(r) for r in resolve(host)) if a is not None]
        if not resolved:
            return (
                f"the host {host!r} does not resolve from the server: it cannot be checked "
                "(name it in LLMOPS_INTEGRATION_URL_ALLOWLIST if only the tool's network "
                "knows it)"
            )
        addresses = resolved
    for address in addresses:
        what = internal_network(address)
        if what is None or allowlist.covers(address):
            continue
        subject = f"{address} is" if literal is not None else f"{host!r} resolves to {address},"
        return f"{subject} {what}: refused unless LLMOPS_INTEGRATION_URL_ALLOWLIST names it"
    return None
