#!/usr/bin/env python3
"""A Prometheus-like scrape loop for bench/upstreams.sh: N targets, each scraped from
blackbox_exporter's /probe every INTERVAL seconds, spread evenly over the interval, over
one kept-alive HTTP/1.1 connection per target (as Prometheus does). Runs for DURATION
seconds, then prints one JSON line: scrapes completed, failed, and how many probes reported
probe_success 1.

Only scrapes that end after WARMUP seconds are counted.

Usage: scrape_loop.py EXPORTER_ADDR TARGET_URL_PREFIX N INTERVAL DURATION WARMUP
"""

import asyncio
import json
import sys
import time


async def scraper(host, port, path, offset, interval, counted_from, end, stats):
    await asyncio.sleep(offset)
    reader = writer = None
    next_at = time.monotonic()
    while next_at < end:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=interval * 2)
            length, chunked = 0, False
            for line in head.split(b"\r\n"):
                lower = line.lower()
                if lower.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
                    chunked = True
            if chunked:
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    body += (await reader.readexactly(size + 2))[:-2]
            else:
                body = await reader.readexactly(length)
            if time.monotonic() >= counted_from:
                stats["scrapes"] += 1
                if b"\nprobe_success 1" in body:
                    stats["success"] += 1
        except Exception:  # noqa: BLE001 - a bench loop: count and reconnect
            if time.monotonic() >= counted_from:
                stats["failed"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if writer is not None:
        writer.close()


async def main():
    addr, prefix, n, interval, duration, warmup = sys.argv[1:7]
    host, port = addr.rsplit(":", 1)
    n, interval, duration, warmup = int(n), float(interval), float(duration), float(warmup)
    start = time.monotonic()
    counted_from, end = start + warmup, start + warmup + duration
    stats = {"scrapes": 0, "failed": 0, "success": 0}
    tasks = [
        scraper(
            host,
            int(port),
            f"/probe?module=http_2xx&target={prefix}{i}",
            interval * i / n,
            interval,
            counted_from,
            end,
            stats,
        )
        for i in range(n)
    ]
    await asyncio.gather(*tasks)
    print(json.dumps(stats))


asyncio.run(main())
