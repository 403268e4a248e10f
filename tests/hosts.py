"""Test hosts on one machine: network namespaces joined by a bridge, each with its own host name.

The machine itself (the root namespace) plays the database host: it holds the bridge's address,
and forwards that address's PostgreSQL and Redis ports to the servers on its loopback, so that
the hosts reach them over the namespace network as other machines would. Everything here needs
root and iproute2; `namespaces_unavailable()` says why not where they cannot be made.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# A subnet of the test's own, on a bridge that only the namespaces below are attached to.
SUBNET = "10.231.77"
GATEWAY = f"{SUBNET}.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def namespaces_unavailable() -> str:
    """Why namespaced test hosts cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 (ip) or util-linux (unshare) is not installed"
    name = f"mgprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot make a network namespace: {getattr(exc, 'stderr', b'') or exc}"
    _ip("netns", "del", name)
    return ""


@dataclass(frozen=True)
class Host:
    """One test host: its namespace, host name and address on the bridge."""

    name: str
    netns: str
    address: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run on this host: in its network namespace, under its own host name."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                f'hostname {self.name} && exec "$@"', "sh", *argv]


@dataclass
class Network:
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)


@contextmanager
def namespace_network(names: list[str]) -> Iterator[Network]:
    """A bridge at GATEWAY and one namespace per name (addresses .10, .11, ...), removed afterwards."""
    tag = uuid.uuid4().hex[:5]
    network = Network(bridge=f"mgbr{tag}")
    made: list[str] = []
    try:
        _ip("link", "add", network.bridge, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", network.bridge)
        _ip("link", "set", network.bridge, "up")
        for index, name in enumerate(names):
            netns, outside, inside = f"mg{tag}{index}", f"mgv{tag}{index}", f"mgp{tag}{index}"
            _ip("netns", "add", netns)
            made.append(netns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", outside, "master", network.bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", netns)
            address = f"{SUBNET}.{10 + index}"
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", netns, "link", "set", inside, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            network.hosts[name] = Host(name=name, netns=netns, address=address)
        yield network
    finally:
        for netns in made:  # a namespace's veth end goes with it, and takes its peer along
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", network.bridge], capture_output=True, timeout=30)


class Forwarder:
    """TCP ports of GATEWAY forwarded to servers on this machine's loopback, in a thread."""

    def __init__(self, routes: dict[int, tuple[str, int]], host: str = GATEWAY) -> None:
        self.routes, self.host = routes, host
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Forwarder:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the port forwarder did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        for port, target in self.routes.items():
            serve = functools.partial(self._pipe_to, target)
            self.loop.run_until_complete(asyncio.start_server(serve, self.host, port))
        self.ready.set()
        self.loop.run_forever()

    async def _pipe_to(self, target: tuple[str, int], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
