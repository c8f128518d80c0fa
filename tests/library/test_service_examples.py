"""The two example services (examples/): a herd of concurrent HTTP requests for
one key, on loopback, makes one origin fetch. The origin is held until every
request waits on the proxy, so the herd is a herd whatever the machine's speed."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import threading
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from types import ModuleType

from support.doubles import WAIT, Backend, in_thread, outcome, wait_until

from collapsed_forwarding import AsyncCollapsedForwardingProxy, CollapsedForwardingProxy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HERD = 64


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_asyncio_service_makes_one_origin_fetch_for_a_herd() -> None:
    service = example("asyncio_service")
    calls: Counter[Hashable] = Counter()

    async def main() -> None:
        gate = asyncio.Event()

        async def origin(key: Hashable) -> str:
            calls[key] += 1
            await gate.wait()
            return f"value of {key}"

        proxy = AsyncCollapsedForwardingProxy(origin, timeout=WAIT)
        server = await service.start(proxy)
        port = server.sockets[0].getsockname()[1]

        async def client() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /popular HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = await reader.read()
            writer.close()
            return reply

        async with server, asyncio.timeout(WAIT):
            herd = [asyncio.create_task(client()) for _ in range(HERD)]
            while proxy.key_stats("popular")["waiting"] < HERD:
                await asyncio.sleep(0.001)
            gate.set()
            replies = await asyncio.gather(*herd)
        assert all(r.startswith(b"HTTP/1.1 200") and r.endswith(b"\r\n\r\nvalue of popular") for r in replies)
        assert calls == Counter({"popular": 1})

    asyncio.run(main())


def test_the_threaded_service_makes_one_origin_fetch_for_a_herd(backend: Backend) -> None:
    service = example("threaded_service")
    backend.hold("popular")
    proxy = CollapsedForwardingProxy(backend, timeout=WAIT)
    server = service.make_server(proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def client() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        try:
            connection.request("GET", "/popular")
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    try:
        herd = [in_thread(client) for _ in range(HERD)]
        wait_until(lambda: proxy.key_stats("popular")["waiting"] == HERD, "the whole herd waiting")
        backend.release("popular")
        assert [outcome(reply) for reply in herd] == [(200, b"value-popular")] * HERD
        assert backend.calls["popular"] == 1
    finally:
        server.shutdown()
        server.server_close()
