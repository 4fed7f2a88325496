"""Free loopback ports for tests that start real validators (every test binds 127.0.0.1 only)."""

from __future__ import annotations

import random
import socket


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux: 32768 unless tuned)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base_port(n: int, low: int = 20000, high: int | None = None) -> int:
    """A base port with ``n`` consecutive free ports on 127.0.0.1, each checked by binding it.

    Randomised, so concurrent test runs rarely race for the same range. Kept below the kernel's
    ephemeral range: a port there can be taken by any outgoing connection (the nodes' own peer
    links included) between this check and the node's bind, which failed CI once.
    """
    if high is None:
        high = min(_ephemeral_low(), 60000)
        if high - n <= low:  # an unusual kernel setting: fall back to the whole unprivileged range
            high = 60000
    for _ in range(200):
        base = random.randint(low, high - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} free consecutive ports in {low}-{high} on 127.0.0.1")
