"""What the library promises about its backend: fetch_and_cache reports the
origin's error, a backend that waits on itself is told so at once, and a backend
of no usable shape is refused when the proxy is made."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support.doubles import Backend

from collapsed_forwarding.cache import CollapsedForwardingProxy
from collapsed_forwarding.errors import OriginUnavailable


def test_fetch_and_cache_after_an_origin_error_raises_that_error(backend: Backend) -> None:
    proxy = CollapsedForwardingProxy(backend, ttl=60, timeout=5)
    assert proxy.get("k") == "value-k"
    backend.plan["k"].append(RuntimeError("the origin is down"))
    with pytest.raises(OriginUnavailable, match="the origin is down"):
        proxy.fetch_and_cache("k")
    assert proxy.stats()["stale"] == 0
    assert proxy.get("k") == "value-k"  # the fresh entry is still served to a plain get


def test_a_backend_that_gets_the_key_it_is_fetching_fails_at_once() -> None:
    inner: list[BaseException] = []
    timeout = 30.0  # the test would take this long if the inner get waited on its own fetch

    def backend(key: Any) -> Any:
        try:
            return proxy.get(key)
        except Exception as exc:
            inner.append(exc)
            raise

    proxy = CollapsedForwardingProxy(backend, ttl=60, timeout=timeout)
    done = threading.Event()
    outcome: list[BaseException] = []

    def outer() -> None:
        try:
            proxy.get("k")
        except Exception as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=outer, daemon=True).start()
    assert done.wait(timeout / 3), "the backend's get waited on the fetch it is part of"
    assert isinstance(inner[0], RuntimeError) and "fetching" in str(inner[0])
    assert isinstance(outcome[0], OriginUnavailable)


def test_a_backend_that_gets_another_key_is_served() -> None:
    proxy = CollapsedForwardingProxy(lambda key: key if key == "other" else proxy.get("other"), timeout=5)
    assert proxy.get("k") == "other"


@pytest.mark.parametrize("backend", [{}, None, 42, "origin"])
def test_a_backend_of_no_usable_shape_is_refused_at_construction(backend: Any) -> None:
    with pytest.raises(TypeError, match=r"callable.*start_fetch") as error:
        CollapsedForwardingProxy(backend)
    assert type(backend).__name__ in str(error.value)
