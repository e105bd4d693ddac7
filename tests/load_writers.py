"""Write load for tests that measure the service under it, run as a child process (so the writers do not
share the test process's interpreter with what is measured):

    python tests/load_writers.py URL TOKEN SECONDS CLIENTS

CLIENTS concurrent clients each send /engage batches back to back for SECONDS, to a few hundred profiles
(so writers also wait on each other's row locks, as a busy project's do), then one JSON line of counts and
latencies goes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import httpx

BATCH = 50
PROFILES = 300


async def writer(
    client: httpx.AsyncClient, token: str, until: float, seed: int, out: dict[str, list[float]]
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        batch = [
            {
                "$token": token,
                "$distinct_id": f"load-{rng.randrange(PROFILES)}",
                "$set": {"plan": rng.choice(["free", "pro", "team"]), "seen": rng.random()},
                "$add": {"n": 1},
            }
            for _ in range(BATCH)
        ]
        started = time.monotonic()
        try:
            response = await client.post("/engage", json=batch)
            status = str(response.status_code)
        except httpx.TransportError as exc:
            status = type(exc).__name__
        out.setdefault(status, []).append(time.monotonic() - started)


async def main(url: str, token: str, seconds: float, clients: int) -> None:
    out: dict[str, list[float]] = {}
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(writer(client, token, until, seed, out) for seed in range(clients)))
    summary = {
        status: {"count": len(times), "p50": sorted(times)[len(times) // 2], "max": max(times)}
        for status, times in out.items()
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
