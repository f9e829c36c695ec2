"""Outbound requests of the service (Judge0 callbacks, any later webhook): the one
place that decides where they may go, and sends them.

A destination is allowed when every address its host resolves to is public: not
loopback, private, link-local (where cloud metadata services live), multicast,
unspecified, reserved, shared (100.64/10) or otherwise not global. IPv6 forms
that carry an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo) are judged
by the address they carry. The operator may allow more networks with
``outbound_allow`` (CIDRs; e.g. a callback receiver on ``127.0.0.1/32``).

The check is made after DNS resolution, and the request then goes to the very
address that was checked (the URL's host is kept for ``Host`` and TLS SNI and
certificate checks), so a name that resolves differently a moment later cannot
redirect it. Redirects are not followed, proxies from the environment are not
used, each request has one deadline for connecting, sending and answering, and
at most ``MAX_RESPONSE_BYTES`` of the answer are read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from tvm.config.settings import Settings
from tvm.errors import ConfigError, DestinationRefused, Unreachable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_RESPONSE_BYTES = 64 * 1024
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SCHEMES = {"http": 80, "https": 443}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), from the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo client)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def why_not_public(address: Address) -> str | None:
    """Why a request may not go to ``address`` by default, or None if it is public."""
    carried = embedded_ipv4(address)
    if carried is not None:
        reason = why_not_public(carried)
        return f"it carries {carried}, which is {reason}" if reason else None
    checks = (
        ("loopback", address.is_loopback),
        ("link-local (where cloud metadata services live)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not a public address", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL as given and the address it will be sent to."""

    url: httpx.URL
    address: str


class OutboundPolicy:
    """Decides and sends the service's outbound requests (rules in the module docstring)."""

    def __init__(
        self,
        allow: tuple[Network, ...] = (),
        timeout: float = 5.0,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.allow = allow
        self.timeout = timeout
        self.resolver = resolver

    @classmethod
    def from_settings(
        cls, settings: Settings, resolver: Resolver = system_resolver
    ) -> OutboundPolicy:
        networks: list[Network] = []
        for text in settings.outbound_allow:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"outbound_allow: {text!r} is not a network (CIDR): {exc}"
                ) from exc
        return cls(tuple(networks), settings.callback_timeout_seconds, resolver)

    def check_address(self, text: str) -> None:
        """Refuse an address that is not public, unless an allowed network holds it."""
        address = ipaddress.ip_address(text.split("%", 1)[0])
        carried = embedded_ipv4(address)
        if any(address in net or (carried is not None and carried in net) for net in self.allow):
            return
        reason = why_not_public(address)
        if reason:
            raise DestinationRefused(
                f"the destination {address} is {reason}; outbound requests go to public "
                "addresses only, unless the operator allows the network in outbound_allow"
            )

    def parse(self, url: str) -> httpx.URL:
        """The URL if its form is acceptable: http(s), a host, no credentials."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise DestinationRefused(f"{url!r} is not a URL: {exc}") from exc
        if parsed.scheme not in SCHEMES or not parsed.host:
            raise DestinationRefused(f"{url!r} is not an http:// or https:// URL with a host")
        if parsed.userinfo:
            raise DestinationRefused(f"{url!r}: credentials in the URL are not allowed")
        return parsed

    def check_literal(self, url: str) -> None:
        """The checks that need no DNS (when a submission is made): form, and the host
        when it is an address."""
        host = self.parse(url).host
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        self.check_address(host)

    async def resolve(self, url: str) -> Target:
        """Check ``url`` after DNS resolution; every address of the host must be allowed."""
        parsed = self.parse(url)
        port = parsed.port or SCHEMES[parsed.scheme]
        try:
            addresses = await asyncio.wait_for(self.resolver(parsed.host, port), self.timeout)
        except (OSError, TimeoutError, UnicodeError) as exc:
            # UnicodeError: a name no resolver takes (an empty label, "a..b", or one
            # longer than 63 characters), unresolvable like any unknown name
            raise Unreachable(f"cannot resolve {parsed.host}: {exc}") from exc
        if not addresses:
            raise Unreachable(f"{parsed.host} has no address")
        for address in addresses:
            self.check_address(address)
        return Target(parsed, addresses[0])

    async def send(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """Send one request to the checked address; its answer's status code."""
        target = await self.resolve(url)
        pinned = target.url.copy_with(host=target.address.split("%", 1)[0])
        sent_headers = {**headers, "Host": target.url.netloc.decode("ascii")}
        extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
        try:
            async with asyncio.timeout(self.timeout):
                async with httpx.AsyncClient(
                    timeout=self.timeout, follow_redirects=False, trust_env=False
                ) as client:
                    request = client.build_request(
                        method, pinned, content=body, headers=sent_headers, extensions=extensions
                    )
                    response = await client.send(request, stream=True)
                    try:
                        read = 0
                        async for chunk in response.aiter_raw():
                            read += len(chunk)
                            if read >= MAX_RESPONSE_BYTES:
                                break
                    finally:
                        await response.aclose()
                    return response.status_code
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise Unreachable(f"{method} {target.url} failed: {type(exc).__name__}: {exc}") from exc
