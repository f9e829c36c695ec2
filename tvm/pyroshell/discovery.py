"""Workers found by a DNS name (``workers_dns``): every address the name resolves
to is one worker. Docker's embedded DNS answers a compose service's name
(``worker:8080``) with one address per replica, as a Kubernetes headless Service
does with one per ready pod, so scaling the workers needs no configuration."""

from __future__ import annotations

import asyncio
import socket

DEFAULT_PORT = 8080  # the tvm/pyrovm image's port


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too), or a bare host on the image's port."""
    host, _, port = target.strip().rpartition(":")
    if not host or not port.isdigit() or (host.count(":") and not host.endswith("]")):
        return target.strip().strip("[]"), DEFAULT_PORT
    return host.strip("[]"), int(port)


async def resolve_workers(target: str) -> set[str]:
    """The base URLs of the workers ``target`` names now; raises OSError when the
    name does not resolve."""
    host, port = split_target(target)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = set()
    for family, _, _, _, address in infos:
        ip = str(address[0])
        found.add(f"http://[{ip}]:{port}" if family == socket.AF_INET6 else f"http://{ip}:{port}")
    return found
