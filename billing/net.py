"""Loopback ports for the processes this project starts itself."""

from __future__ import annotations

import random
import socket


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held open together, so distinct)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port_pair(offset: int, low: int = 20_000, high: int = 45_000) -> int:
    """A port p in [low, high) with p + offset free too (a Redis Cluster node's bus
    port is its port + 10000, and must be at most 65535)."""
    for port in random.sample(range(low, high), 200):
        socks = [socket.socket(), socket.socket()]
        try:
            socks[0].bind(("127.0.0.1", port))
            socks[1].bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port pair")
