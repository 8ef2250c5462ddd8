"""The raw cost of steady-state probing: one asyncio loop, a TCP connect per port per period.

python -m bench.harness.rawprobe --period 10 --duration 60 PORT...

Prints one JSON line: CPU seconds spent while probing (process time, start-up
excluded), probes made, and latency percentiles — what Steward's operator
does in steady state, minus everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.harness.timing import summarize


async def probe_loop(port: int, period: float, offset: float, end: float, out: list[float]) -> None:
    await asyncio.sleep(offset)
    while time.monotonic() < end:
        t = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
            writer.close()
            await writer.wait_closed()
            out.append(time.perf_counter() - t)
        except (OSError, TimeoutError):
            out.append(float("nan"))
        await asyncio.sleep(period)


async def main_async(ports: list[int], period: float, duration: float) -> dict[str, object]:
    latencies: list[float] = []
    cpu0 = time.process_time()
    end = time.monotonic() + duration
    n = max(len(ports), 1)
    await asyncio.gather(
        *(probe_loop(p, period, period * i / n, end, latencies) for i, p in enumerate(ports))
    )
    cpu = time.process_time() - cpu0
    return {
        "cpu_seconds": round(cpu, 3),
        "probes": len(latencies),
        "failures": sum(1 for x in latencies if x != x),
        "latency": summarize([x for x in latencies if x == x]),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--period", type=float, default=10)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("ports", nargs="+", type=int)
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args.ports, args.period, args.duration))))


if __name__ == "__main__":
    main()
