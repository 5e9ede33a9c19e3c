#!/usr/bin/env python3
"""Clients of bench/abuse.sh: slow sockets with health checks, and a /probe flood.

  abuse.py slowloris PORT SOCKETS SECONDS   -> one JSON line
  abuse.py flood PORT TARGET_PORT N DEADLINE -> one JSON line
  abuse.py hang PORT                          (a target that accepts and never answers)

Loopback only; every loop is bounded in count and time.
"""

import asyncio
import json
import sys
import time

HOST = "127.0.0.1"


async def get(port, path, timeout, headers=""):
    """(status, seconds from the request's last byte sent to the answer's end) of one GET on a
    fresh connection; status 0 when none came within `timeout`."""
    sent = [None]

    async def once():
        r, w = await asyncio.open_connection(HOST, port)
        w.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{headers}Connection: close\r\n\r\n".encode())
        await w.drain()
        sent[0] = time.monotonic()
        line = await r.readline()
        while await r.read(65536):
            pass
        w.close()
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    t0 = time.monotonic()
    try:
        status = await asyncio.wait_for(once(), timeout)
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    return status, time.monotonic() - (sent[0] or t0)


async def slow_socket(port, stop, opened):
    """Half a request header, then one byte every 5 s; reconnects when the server closes it."""
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        opened[0] += 1
        try:
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            await w.drain()
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(r.read(1024), 5)
                    if not data:
                        break
                except asyncio.TimeoutError:
                    w.write(b"a")
                    await w.drain()
        except OSError:
            pass
        finally:
            w.close()
        await asyncio.sleep(0.1)


async def slowloris(port, sockets, seconds):
    stop = asyncio.Event()
    opened = [0]
    tasks = [asyncio.create_task(slow_socket(port, stop, opened)) for _ in range(sockets)]
    await asyncio.sleep(min(3.0, seconds / 4))  # let them connect
    checks = {"/-/healthy": [], "/metrics": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in checks:
            t0 = time.monotonic()
            status, _ = await get(port, path, 1.0)
            checks[path].append((status, time.monotonic() - t0))
        await asyncio.sleep(0.25)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    out = {"sockets": sockets, "connections_made": opened[0]}
    for path, results in checks.items():
        ok = sum(1 for s, t in results if s == 200 and t <= 1.0)
        out[path] = {"answered_within_1s": ok, "asked": len(results)}
    return out


async def loop_lag(stop, worst):
    """The client's own lateness: how far past 10 ms its event loop wakes a 10 ms sleep."""
    while not stop.is_set():
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        worst[0] = max(worst[0], time.monotonic() - t0 - 0.01)


async def flood(port, target_port, n, deadline):
    path = f"/probe?module=http_2xx&target=http://{HOST}:{target_port}/"
    header = f"X-Prometheus-Scrape-Timeout-Seconds: {deadline + 0.5}\r\n"

    async def one():
        return await get(port, path, deadline + 30, header)

    stop, worst = asyncio.Event(), [0.0]
    lag = asyncio.create_task(loop_lag(stop, worst))
    probes = [asyncio.create_task(one()) for _ in range(n)]
    scrapes = []
    await asyncio.sleep(0.2)
    for _ in range(10):
        t0 = time.monotonic()
        s, _ = await get(port, "/metrics", 1.0)
        scrapes.append(s == 200 and time.monotonic() - t0 <= 1.0)
        await asyncio.sleep(deadline / 12)
    results = await asyncio.gather(*probes)
    stop.set()
    await lag
    answered = sorted(t for s, t in results if s == 200)
    refused = [t for s, t in results if s == 503]
    q = lambda p: round(answered[min(len(answered) - 1, int(p * len(answered)))], 3) if answered else None
    return {
        "probes": n,
        "deadline_s": deadline,
        "answered_200": len(answered),
        "answered_503": len(refused),
        "slowest_503_s": round(max(refused), 3) if refused else None,
        "failed_or_other": n - len(answered) - len(refused),
        "late_over_deadline_plus_100ms": sum(1 for t in answered if t > deadline + 0.1),
        "answer_s": {"min": q(0), "p50": q(0.5), "p99": q(0.99), "max": q(1.0)},
        "metrics_answered_within_1s": f"{sum(scrapes)}/{len(scrapes)}",
        "client_loop_lag_max_s": round(worst[0], 3),
    }


async def hang(port):
    held = []

    async def keep(r, w):
        held.append(w)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(keep, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main():
    mode = sys.argv[1]
    if mode == "slowloris":
        port, sockets, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(slowloris(port, sockets, seconds))))
    elif mode == "flood":
        port, tport, n, deadline = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(asyncio.run(flood(port, tport, n, deadline))))
    elif mode == "hang":
        asyncio.run(hang(int(sys.argv[2])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
