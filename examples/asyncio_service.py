"""A small asyncio HTTP service, on the standard library alone, in front of a
slow origin: `GET /<key>` answers the key's value, and a herd of concurrent
requests for one key makes one origin fetch.

    python3 examples/asyncio_service.py --port 8080     # then: curl localhost:8080/popular

HTTP/1.0-style: one request per connection, the reply closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collapsed_forwarding import AsyncCollapsedForwardingProxy, CacheError, KeyMissing  # noqa: E402

MAX_HEADER_LINES = 100
HEADER_SECONDS = 5.0  # a client that sends no full request in this long is dropped


def slow_origin(latency: float) -> Callable[[Hashable], Awaitable[Any]]:
    """An origin that takes `latency` seconds per fetch (a database, another service)."""

    async def fetch(key: Hashable) -> str:
        await asyncio.sleep(latency)
        return f"value of {key}"

    return fetch


async def handle(proxy: AsyncCollapsedForwardingProxy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        key = await asyncio.wait_for(read_request(reader), HEADER_SECONDS)
        if key is None:
            status, body = 400, "bad request"
        else:
            try:
                status, body = 200, str(await proxy.aget(key))
            except KeyMissing:
                status, body = 404, "no such key"
            except CacheError as error:
                status, body = 502, str(error)
        data = body.encode()
        writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # a client that went away or never finished its request gets nothing
    finally:
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> str | None:
    """The key a `GET /<key>` asks for (None for anything else), headers read and skipped."""
    request_line = (await reader.readline()).decode("latin-1").split()
    for _ in range(MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            break
    else:
        return None
    if len(request_line) != 3 or request_line[0] != "GET" or not request_line[1].startswith("/"):
        return None
    return request_line[1][1:]


async def start(proxy: AsyncCollapsedForwardingProxy, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: handle(proxy, r, w), host, port, backlog=256)


async def serve(host: str, port: int, latency: float) -> None:
    proxy = AsyncCollapsedForwardingProxy(slow_origin(latency), ttl=30, timeout=max(1.0, 2 * latency))
    server = await start(proxy, host, port)
    print(f"serving on http://{host}:{server.sockets[0].getsockname()[1]}/<key>", file=sys.stderr)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each origin fetch takes")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.latency))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
