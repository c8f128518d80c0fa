"""A small threaded HTTP service (http.server's ThreadingHTTPServer) in front
of a slow blocking origin: `GET /<key>` answers the key's value, and a herd of
concurrent requests for one key makes one origin fetch.

    python3 examples/threaded_service.py --port 8081    # then: curl localhost:8081/popular
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Hashable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collapsed_forwarding import CacheError, CollapsedForwardingProxy, KeyMissing  # noqa: E402


def slow_origin(latency: float) -> Callable[[Hashable], Any]:
    """A blocking origin that takes `latency` seconds per fetch."""

    def fetch(key: Hashable) -> str:
        time.sleep(latency)
        return f"value of {key}"

    return fetch


def make_server(proxy: CollapsedForwardingProxy, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            try:
                status, body = 200, str(proxy.get(self.path[1:]))
            except KeyMissing:
                status, body = 404, "no such key"
            except CacheError as error:
                status, body = 502, str(error)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise under a herd
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # (the default, 5, drops a herd's connections)

    return Server((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each origin fetch takes")
    args = parser.parse_args(argv)
    proxy = CollapsedForwardingProxy(slow_origin(args.latency), ttl=30, timeout=max(1.0, 2 * args.latency))
    with make_server(proxy, args.host, args.port) as server:
        print(f"serving on http://{args.host}:{server.server_address[1]}/<key>", file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
