"""Free loopback ports for tests that start real validators (every test binds 127.0.0.1 only)."""

from __future__ import annotations

import random
import socket


def free_base_port(n: int, low: int = 20000, high: int = 60000) -> int:
    """A base port with ``n`` consecutive free ports on 127.0.0.1, each checked by binding it.

    Randomised, so concurrent test runs rarely race for the same range.
    """
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
