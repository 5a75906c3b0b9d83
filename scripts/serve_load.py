"""A bounded load test of a running `yolo-nas serve`: N clients on keep-alive connections send M images each.

    python scripts/serve_load.py http://127.0.0.1:8000 --clients 8 --requests 50 [image ...]

Images default to the bundled sample photos, sent round-robin as raw bodies. Prints the latency p50/p99, the
throughput, the errors and the server's batching counts (from GET /info, before and after), and one JSON line
with the same numbers. Exit code 1 when any request failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from yolonas_cli.data.sources import default_source

TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def info(host: str, port: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", "/info")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def client(host: str, port: int, images: list[tuple[bytes, str]], offset: int, count: int) -> list[tuple]:
    """(seconds, status, batch size) of `count` requests on one connection."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    out = []
    try:
        for i in range(count):
            body, content_type = images[(offset + i) % len(images)]
            started = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            out.append((time.perf_counter() - started, response.status, int(response.getheader("X-Batch-Size") or 0)))
    finally:
        conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    paths = args.images or sorted(p for p in default_source().iterdir() if p.suffix.lower() in TYPES)
    images = [(p.read_bytes(), TYPES.get(p.suffix.lower(), "application/octet-stream")) for p in paths]
    load_before = os.getloadavg()[0]
    before = info(host, port)["batching"]
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        jobs = [pool.submit(client, host, port, images, c, args.requests) for c in range(args.clients)]
        answers = [a for job in jobs for a in job.result()]
    seconds = time.perf_counter() - started
    after = info(host, port)["batching"]
    latencies = sorted(a[0] * 1e3 for a in answers)
    calls = after["batches"] - before["batches"]
    served = after["images"] - before["images"]
    report = {
        "requests": len(answers),
        "clients": args.clients,
        "errors": sum(a[1] != 200 for a in answers),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(answers) / seconds, 2),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
        "model_calls": calls,
        "mean_batch": round(served / calls, 2) if calls else 0.0,
        "largest_batch": max(a[2] for a in answers),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(
        f"{report['requests']} requests from {args.clients} clients in {report['seconds']} s: "
        f"{report['requests_per_s']} requests/s, p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
        f"{report['errors']} errors; {calls} model calls, mean batch {report['mean_batch']}, largest "
        f"{report['largest_batch']}; load average {report['load_average'][0]} before, {report['load_average'][1]} after"
    )
    print(json.dumps(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
