"""Another machine for a test: a Linux network namespace of its own, joined to this one by
a veth pair on loopback-range addresses, so that a process started in it shares nothing
local with the test (no loopback services, no abstract sockets) and reaches only what the
test relays to it.

Needs root and iproute2 (``ip netns``); ``namespace_unavailable()`` says why not.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFIX = "lwst"


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # this namespace's end of the link, as the other host sees it
    address: str  # the other host's own address

    @property
    def prefix(self) -> list[str]:
        """Run a command inside: ``[*ns.prefix, "python", ...]``."""
        return ["ip", "netns", "exec", self.name]


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def _sysctl(key: str, value: str, netns: str | None = None) -> None:
    path = f"/proc/sys/{key.replace('.', '/')}"
    command = ["sh", "-c", f"echo {value} > {path}"]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def namespace_unavailable() -> str | None:
    """Why a network namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    probe = f"{PREFIX}{os.getpid()}probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _stale_namespaces_remove() -> None:
    """Namespaces left by a test run that was killed before it could clean up."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix(PREFIX).split("x")[0]
        if name.startswith(PREFIX) and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@contextmanager
def network_namespace() -> Iterator[Namespace]:
    """A namespace with a veth link 127.A.B.1 (here) <-> 127.A.B.2 (there); deleted on exit,
    with its link, whatever happened inside."""
    _stale_namespaces_remove()
    tag = f"{random.randrange(16**5):05x}"
    name = f"{PREFIX}{os.getpid()}x{tag}"
    here, there = f"lwh{tag}", f"lwn{tag}"
    # A /30 somewhere in 127.100.0.0-127.249.255.255, away from 127.0.0.1.
    base = f"127.{random.randrange(100, 250)}.{random.randrange(256)}"
    last = random.randrange(64) * 4
    host_address, address = f"{base}.{last + 1}", f"{base}.{last + 2}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", name)
        _ip("addr", "add", f"{host_address}/30", "dev", here)
        _ip("link", "set", here, "up")
        _sysctl(f"net.ipv4.conf.{here}.route_localnet", "1")
        _ip("link", "set", "lo", "up", netns=name)
        _ip("addr", "add", f"{address}/30", "dev", there, netns=name)
        _ip("link", "set", there, "up", netns=name)
        _sysctl(f"net.ipv4.conf.{there}.route_localnet", "1", netns=name)
        # Inside, all of 127/8 is the namespace's own loopback; keep only 127.0.0.1 there,
        # so that the link's loopback-range addresses are routed over the veth.
        _ip("route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local", netns=name)
        yield Namespace(name=name, host_address=host_address, address=address)
    finally:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["ip", "link", "delete", here], capture_output=True)
