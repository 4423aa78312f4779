"""Resident memory of a running Sluice: idle, then holding N idle
keep-alive client connections (each has sent one request), then after
they close.

Usage: memory.py PID HOST:PORT [N=10000] [BODY=perf/scenarios/chat-1k.json]
Prints one JSON line: {"idle_mb", "connections", "held_mb", "after_mb"}.
"""
import asyncio
import json
import resource
import sys
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def hold(host, port, request, n):
    conns = []
    sem = asyncio.Semaphore(200)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection(host, port)
            w.write(request)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await r.readexactly(length)
            conns.append(w)

    await asyncio.gather(*(one() for _ in range(n)))
    return conns


def main(argv):
    pid, addr = int(argv[0]), argv[1]
    n = int(argv[2]) if len(argv) > 2 else 10000
    body = open(argv[3] if len(argv) > 3 else "perf/scenarios/chat-1k.json", "rb").read()
    host, port = addr.rsplit(":", 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 1024)), hard))
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    idle = rss_mb(pid)
    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(hold(host, int(port), request, n))
    time.sleep(1)
    held = rss_mb(pid)
    for w in conns:
        w.close()
    time.sleep(2)
    print(json.dumps({"idle_mb": round(idle, 1), "connections": len(conns),
                      "held_mb": round(held, 1), "after_mb": round(rss_mb(pid), 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
