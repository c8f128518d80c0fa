"""End-to-end tests of the freshness and overload flags: --grace, --stale-if-error,
--early-refresh, --jitter, --error-ttl and --max-waiters.

Where a test needs to control the origin it runs the node with `--origin lin-kv`
and lets tests/support/net.py play the lin-kv service, whose latency, failures
and held replies the test sets. Timing bounds are generous (a shared 2-core
machine); measured figures are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from support.net import Net

pytestmark = pytest.mark.process  # starts node processes

LIN_KV = ["--origin", "lin-kv"]
GET_K = {"type": "get", "key": "k"}


def sleep_until(when: float) -> None:
    """Pace by the clock (for time-driven behaviour: expiry, request streams), never to await a reply."""
    time.sleep(max(0.0, when - time.monotonic()))


def caches(replies: list[dict]) -> Counter:
    return Counter(r.get("cache", f"error {r.get('code')}") for r in replies)


def key_stats(net: Net, keys: list[str]) -> list[dict]:
    """`stats` for each key, asked in one burst."""
    return net.replies(net.send_many("n1", [{"type": "stats", "key": k} for k in keys]))


def expiry_of(net: Net, key: str = "k") -> float:
    """When (on this process's monotonic clock) the node's entry for key stops being fresh."""
    return time.monotonic() + net.call("n1", {"type": "stats", "key": key})["ttl_left"]


def test_grace_serves_an_expired_entry_stale_at_once_while_one_fetch_refreshes_it():
    """--ttl 0.3 --grace 5, origin 0.3 s: 200 requests for the expired entry are answered stale at once, one fetch."""
    with Net(args=[*LIN_KV, "--ttl", "0.3", "--grace", "5", "--origin-timeout", "2"]) as net:
        net.kv.set("k", "old")
        net.kv.latency = 0.3
        first = net.call("n1", GET_K)
        assert (first["value"], first["cache"]) == ("old", "miss")
        net.kv.set("k", "new")
        sleep_until(expiry_of(net) + 0.05)

        started = time.monotonic()
        replies = net.replies(net.send_many("n1", [GET_K] * 200))
        took = time.monotonic() - started
        refreshed = net.kv.delivered  # replies lin-kv has sent so far: 1 is the first fill only
        print(f"\ngrace: 200 stale answers in {took * 1000:.0f} ms")
        assert {(r["value"], r["cache"]) for r in replies} == {("old", "stale")}
        assert refreshed == 1, "the stale answers waited for the refresh"
        assert took < 0.25, f"200 stale answers took {took:.3f}s (origin latency 0.3 s)"
        assert net.kv.count("read") == 2  # the first fill and one refresh

        net.kv.wait_until(lambda: net.kv.delivered == 2)  # the refresh's reply is on its way to the node
        after = net.call("n1", GET_K)
        assert (after["value"], after["cache"]) == ("new", "hit")
        assert net.kv.count("read") == 2
        stats = net.call("n1", {"type": "stats"})
        assert (stats["stale"], stats["refreshes"], stats["origin_fetches"]) == (200, 1, 2)


def test_stale_if_error_with_error_ttl_serves_stale_from_one_failed_fetch():
    """--stale-if-error 5 --error-ttl 1, lin-kv failing: 50 requests after expiry get the stale value from 1 read."""
    with Net(args=[*LIN_KV, "--ttl", "0.3", "--stale-if-error", "5", "--error-ttl", "1"]) as net:
        net.kv.set("k", "old")
        assert net.call("n1", GET_K)["value"] == "old"
        net.kv.fail = "error"
        sleep_until(expiry_of(net) + 0.05)
        replies = [net.call("n1", GET_K) for _ in range(50)]
        assert {(r["value"], r["cache"]) for r in replies} == {("old", "stale")}
        assert net.kv.count("read") == 2


def run_stale_if_error(failure: str) -> None:
    """Fill k, make lin-kv fail (`failure`: "error" or "drop"), then ask for k through the window and after it."""
    with Net(args=[*LIN_KV, "--ttl", "0.5", "--stale-if-error", "2", "--origin-timeout", "0.2"]) as net:
        net.kv.set("k", "old")
        assert net.call("n1", GET_K)["cache"] == "miss"
        expires = expiry_of(net)
        net.kv.fail = failure
        sleep_until(expires + 0.05)
        inside = []
        while time.monotonic() < expires + 2 - 0.5:  # inside the window, with room for the fetch to fail
            inside.append(net.call("n1", GET_K))
            time.sleep(0.05)  # pacing: one request every 50 ms or so
        sleep_until(expires + 2 + 0.3)
        outside = net.call("n1", GET_K)
        reads = net.kv.count("read")

    print(f"\nstale-if-error ({failure}): {len(inside)} requests inside the window, {reads} reads")
    assert len(inside) >= 3
    assert {(r["type"], r.get("value"), r.get("cache")) for r in inside} == {("get_ok", "old", "stale")}
    assert (outside["type"], outside["code"]) == ("error", 11 if failure == "error" else 0)
    assert reads >= 1 + len(inside)  # the origin was asked again each time: the stale value hid its failures


def test_stale_if_error_hides_origin_errors_inside_the_window_only():
    """--stale-if-error 2, lin-kv answering errors: no request in the window gets an error; one after it does."""
    run_stale_if_error("error")


def test_stale_if_error_hides_origin_timeouts_inside_the_window_only():
    """--stale-if-error 2, lin-kv silent: requests in the window get the stale value at the timeout; then error 0."""
    run_stale_if_error("drop")


def test_early_refresh_keeps_a_hot_key_from_ever_missing():
    """--ttl 2 --early-refresh 1, origin 0.2 s, a get every 10 ms for 5 s: all hits, at most 12 fetches."""
    with Net(args=[*LIN_KV, "--ttl", "2", "--early-refresh", "1"]) as net:
        net.kv.set("k", "v")
        net.kv.latency = 0.2
        assert net.call("n1", GET_K)["cache"] == "miss"
        started = time.monotonic()
        ids = []
        for i in range(500):
            sleep_until(started + i * 0.01)
            ids.append(net.send("n1", GET_K))
        late = time.monotonic() - (started + 499 * 0.01)
        replies = net.replies(ids, timeout=5)
        reads = net.kv.count("read")
        stats = net.call("n1", {"type": "stats"})

    print(f"\nearly refresh: {reads} reads in {time.monotonic() - started:.1f}s, {stats['refreshes']} refreshes, "
          f"pacing {late * 1000:.0f} ms late, caches {dict(caches(replies))}")
    assert caches(replies) == {"hit": 500}
    assert {r["value"] for r in replies} == {"v"}
    assert 3 <= reads <= 12  # the fill, then at least one refresh before each of the two expiries the 5 s span
    assert stats["refreshes"] == reads - 1


def test_jitter_spreads_the_expiry_of_keys_filled_together():
    """--ttl 2 --jitter 0.5: of 200 keys filled together, at 1.5 s (0.75 x TTL) some have expired and some not."""
    keys = [f"key-{i}" for i in range(200)]
    with Net(args=["--sim-latency", "0", "--ttl", "2", "--jitter", "0.5"]) as net:
        sent = time.monotonic()
        net.replies(net.send_many("n1", [{"type": "get", "key": k} for k in keys]))
        filled = time.monotonic()
        ttl_left = [s["ttl_left"] for s in key_stats(net, keys)]
        shortest_possible = 0.5 * 2 - (time.monotonic() - sent)  # half the TTL, less the time since the fills
        sleep_until(filled + 1.5)
        cached = [s["cached"] for s in key_stats(net, keys)]

    print(f"\njitter: ttl_left {min(ttl_left):.2f}..{max(ttl_left):.2f}s; at 0.75 x TTL {sum(cached)}/200 cached")
    assert all(shortest_possible <= t <= 2.0 for t in ttl_left)  # shortened by at most half
    assert max(ttl_left) - min(ttl_left) > 0.5
    assert 10 <= sum(cached) <= 190, f"{sum(cached)} of 200 still cached at 0.75 x TTL"


def test_error_ttl_makes_a_failing_origin_cost_one_fetch():
    """--error-ttl 1, lin-kv failing: 1,000 requests over 0.5 s get error 11 from one fetch; after 1 s, a new one."""
    with Net(args=[*LIN_KV, "--error-ttl", "1"]) as net:
        net.kv.fail = "error"
        started = time.monotonic()
        ids = []
        for batch in range(50):
            sleep_until(started + batch * 0.01)
            ids += net.send_many("n1", [GET_K] * 20)
        replies = net.replies(ids)
        assert {(r["type"], r["code"]) for r in replies} == {("error", 11)}
        assert net.kv.count("read") == 1
        stats = net.call("n1", {"type": "stats", "key": "k"})
        assert (stats["requests"], stats["errors"]) == (1000, 1000)
        assert (stats["origin_fetches"], stats["origin_errors"]) == (1, 1)

        sleep_until(started + 1.3)
        net.kv.fail = None
        net.kv.set("k", "back")
        assert net.call("n1", GET_K)["value"] == "back"
        assert net.kv.count("read") == 2


def test_max_waiters_sheds_the_rest_at_once():
    """--max-waiters 100, 1,000 gets of a cold key: 900 get error 11 while the fetch is still out; 100 get the value."""
    with Net(args=[*LIN_KV, "--max-waiters", "100", "--origin-timeout", "5"]) as net:
        net.kv.set("k", "v")
        net.kv.hold = True  # the fetch stays out until released
        started = time.monotonic()
        ids = net.send_many("n1", [GET_K] * 1000)
        shed = net.replies(ids[100:])
        shed_s = time.monotonic() - started
        assert {(r["type"], r["code"]) for r in shed} == {("error", 11)}
        assert not any(net.has_reply(m) for m in ids[:100])
        assert net.kv.count("read") == 1

        net.kv.release()
        served = net.replies(ids[:100])
        assert caches(served) == {"miss": 1, "collapsed": 99} and {r["value"] for r in served} == {"v"}
        stats = net.call("n1", {"type": "stats"})
        key = net.call("n1", {"type": "stats", "key": "k"})

    print(f"\nmax-waiters: 900 shed answers in {shed_s * 1000:.0f} ms")
    assert (stats["shed"], stats["requests"], stats["errors"]) == (900, 1000, 900)
    assert (key["shed"], key["misses"], key["collapsed"]) == (900, 1, 99)


def test_read_is_never_served_stale_whatever_the_freshness_flags():
    """--grace and --stale-if-error serve `get` stale, never `read`: a read of an expired entry waits for the
    origin's current value, and a read whose refresh fails gets the error where a get gets the stale value."""
    read_k = {"type": "read", "key": "k"}
    with Net(args=[*LIN_KV, "--ttl", "0.2", "--grace", "30", "--stale-if-error", "30"]) as net:
        net.kv.set("k", "old")
        assert net.call("n1", read_k)["value"] == "old"
        net.kv.set("k", "new")  # behind the cache's back, as another client of the service would
        sleep_until(expiry_of(net) + 0.05)
        assert net.call("n1", read_k)["value"] == "new"  # fetched, not the stale entry

        net.kv.fail = "error"
        sleep_until(expiry_of(net) + 0.05)
        get, read = net.call("n1", GET_K), net.call("n1", read_k)
        assert (get["value"], get["cache"]) == ("new", "stale")
        assert (read["type"], read["code"]) == ("error", 11)
        waiting = net.replies(net.send_many("n1", [read_k, GET_K]))  # the read waits on a fetch; the get does not
        assert [r["type"] for r in waiting] == ["error", "get_ok"]
        stats = net.call("n1", {"type": "stats"})
        assert stats["requests"] == sum(stats[c] for c in ("hits", "stale", "misses", "collapsed", "shed"))
