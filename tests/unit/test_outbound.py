"""The outbound policy: which destinations a callback may reach, decided after DNS
resolution (a test resolver stands in for DNS; no traffic goes anywhere but loopback)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tvm.config.settings import Settings
from tvm.errors import ConfigError, DestinationRefused, Unreachable
from tvm.pyroshell.outbound import OutboundPolicy

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "not a public address"),  # shared address space (carrier NAT)
    ("fd00:ec2::254", "private"),  # a cloud's IPv6 metadata address
    ("::ffff:127.0.0.1", "carries 127.0.0.1"),
    ("::ffff:10.1.2.3", "carries 10.1.2.3"),
    ("::ffff:169.254.169.254", "carries 169.254.169.254"),
    ("2002:7f00:1::", "carries 127.0.0.1"),  # 6to4
    ("64:ff9b::a00:1", "carries 10.0.0.1"),  # NAT64
]
PUBLIC = ["1.1.1.1", "8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"]


def resolver_of(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return table[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        OutboundPolicy().check_address(address)
    assert reason in caught.value.message and "outbound_allow" in caught.value.message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    OutboundPolicy().check_address(address)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://[::1]/x", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/"],
)
def test_literal_addresses_are_refused_without_dns(url: str) -> None:
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("no DNS for a literal address")

    with pytest.raises(DestinationRefused):
        OutboundPolicy(resolver=no_dns).check_literal(url)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://u:p@example.com/"]
)
def test_urls_of_other_forms_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        OutboundPolicy().check_literal(url)


async def test_a_name_resolving_to_loopback_is_refused_after_resolution() -> None:
    resolve = resolver_of({"rebind.example": ["127.0.0.1"]})
    policy = OutboundPolicy(resolver=resolve)
    policy.check_literal("http://rebind.example/hook")  # a name: nothing to say before DNS
    with pytest.raises(DestinationRefused, match="127.0.0.1 is loopback"):
        await policy.resolve("http://rebind.example/hook")
    assert resolve.asked == ["rebind.example"]  # type: ignore[attr-defined]


async def test_one_private_answer_among_public_ones_is_refused() -> None:
    policy = OutboundPolicy(resolver=resolver_of({"mixed.example": ["1.1.1.1", "10.0.0.7"]}))
    with pytest.raises(DestinationRefused, match="10.0.0.7"):
        await policy.resolve("https://mixed.example/")


async def test_a_public_name_resolves_to_its_checked_address() -> None:
    policy = OutboundPolicy(resolver=resolver_of({"hooks.example": ["93.184.216.34"]}))
    target = await policy.resolve("https://hooks.example:8443/done?x=1")
    assert target.address == "93.184.216.34" and target.url.port == 8443


def test_the_operator_may_allow_a_network() -> None:
    policy = OutboundPolicy.from_settings(Settings(outbound_allow=["127.0.0.1/32", "10.1.0.0/16"]))
    policy.check_address("127.0.0.1")
    policy.check_address("::ffff:127.0.0.1")
    policy.check_address("10.1.200.3")
    with pytest.raises(DestinationRefused):
        policy.check_address("127.0.0.2")
    with pytest.raises(DestinationRefused):
        policy.check_address("10.2.0.1")


def test_a_bad_allowed_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="outbound_allow"):
        OutboundPolicy.from_settings(Settings(outbound_allow=["not-a-network"]))


# -- sending (to loopback only, allowed explicitly) ----------------------------------------
class Hook(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None, bytes]] = []
    answer = 200
    location: str | None = None

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.seen.append((self.command, self.path, self.headers.get("Host"), body))
        self.send_response(Hook.answer)
        if Hook.location:
            self.send_header("Location", Hook.location)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            self.wfile.write(b"x" * (1 << 20))  # a big answer: only the start is read
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[int]:
    Hook.seen, Hook.answer, Hook.location = [], 200, None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_send_goes_to_the_checked_address_with_the_names_host(hook: int) -> None:
    policy = OutboundPolicy(
        allow=OutboundPolicy.from_settings(Settings(outbound_allow=["127.0.0.1/32"])).allow,
        resolver=resolver_of({"judge.example": ["127.0.0.1"]}),
    )
    status = await policy.send("PUT", f"http://judge.example:{hook}/done?a=1", b"{}", {})
    assert status == 200
    assert Hook.seen == [("PUT", "/done?a=1", f"judge.example:{hook}", b"{}")]


async def test_redirects_are_not_followed(hook: int) -> None:
    Hook.answer, Hook.location = 307, "http://10.0.0.1/elsewhere"
    policy = OutboundPolicy.from_settings(Settings(outbound_allow=["127.0.0.1/32"]))
    assert await policy.send("PUT", f"http://127.0.0.1:{hook}/", b"{}", {}) == 307
    assert len(Hook.seen) == 1


async def test_a_closed_port_is_unreachable() -> None:
    policy = OutboundPolicy.from_settings(Settings(outbound_allow=["127.0.0.1/32"]))
    with pytest.raises(Unreachable):
        await policy.send("PUT", "http://127.0.0.1:9/", b"{}", {})


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"])
async def test_a_name_no_resolver_takes_is_unreachable_not_a_crash(host: str) -> None:
    """The system resolver's IDNA step raises UnicodeError for an empty or too long
    label; such a callback fails as an unknown name does (found by schemathesis)."""
    policy = OutboundPolicy.from_settings(Settings())
    with pytest.raises(Unreachable, match="cannot resolve"):
        await policy.resolve(f"http://{host}/")
