#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, sends one request on each and
reads its response, then keeps every connection open and idle (stdlib asyncio only).

  idle_clients.py --port PORT [--n 10000] [--path /idle?size=1k] [--batch 500] [--hold 30]
                  [--ready FILE]

When all are open it writes "open N" (with the number of failures) to FILE (or stdout), then
holds them for --hold seconds (or until SIGTERM), then checks how many the server closed
meanwhile and prints a JSON summary: opened, failed, closed_by_server, seconds to open.
Needs `ulimit -n` above N.
"""

import argparse
import asyncio
import json
import signal
import sys
import time


async def one(port, path, results):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: idle.test\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"status {status}")
        results.append((reader, writer))
        return None
    except Exception as e:  # noqa: BLE001 - counted and reported
        return repr(e)


async def main_async(args):
    conns, errors = [], []
    t0 = time.monotonic()
    for start in range(0, args.n, args.batch):
        batch = [one(args.port, args.path, conns) for _ in range(min(args.batch, args.n - start))]
        errors += [e for e in await asyncio.gather(*batch) if e]
    opened_s = time.monotonic() - t0
    line = f"open {len(conns)} failed {len(errors)}\n"
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write(line)
        import os
        os.replace(args.ready + ".tmp", args.ready)
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        pass
    closed = 0
    for reader, writer in conns:
        if reader.at_eof() or writer.is_closing():
            closed += 1
    # A read of 0 bytes that is already buffered means the server closed the connection.
    for reader, writer in conns:
        writer.close()
    json.dump({"opened": len(conns), "failed": len(errors), "first_errors": errors[:3],
               "closed_by_server": closed, "open_seconds": round(opened_s, 2)}, sys.stdout)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--path", default="/idle?size=1k")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--hold", type=float, default=30)
    p.add_argument("--ready")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
