"""End-to-end tests of one cache node: main.py as a process, spoken to over its pipes.

Each test starts its own node(s) through tests/support/net.py (or, for the exact
bytes of a whole session, subprocess.run) and closes them when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.net import MAIN, Net, canonical

from collapsed_forwarding.node.handlers import json_bytes

pytestmark = pytest.mark.process  # starts node processes

INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
INIT_OK = b'{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":1,"msg_id":0}}\n'
FAST = ["--sim-latency", "0"]
LIN_KV = ["--origin", "lin-kv"]
GET_K = {"type": "get", "key": "k"}


def raw(body: dict, src: str = "c1", dest: str = "n1") -> bytes:
    """A request line built by hand (so its msg_id, or anything else, can be wrong)."""
    return json.dumps({"src": src, "dest": dest, "body": body}, separators=(",", ":")).encode() + b"\n"


def reply_or_fail(net: Net, msg_id: int, timeout: float = 3.0) -> dict:
    """The reply to msg_id; if none comes (or the node exits first), fail saying how the node fared."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return net.reply(msg_id, timeout=0.1)
        except TimeoutError:
            if net.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no reply to msg {msg_id}; node exit code {net.poll()}; "
                            f"stderr ends: {net.stderr()[-300:]!r}")


def caches(replies: list[dict]) -> Counter:
    return Counter(r.get("cache", r["type"]) for r in replies)


def sim_value(key: object) -> str:
    return "value-" + (key if isinstance(key, str) else canonical(key))


# -- process and wire format ------------------------------------------------


@pytest.mark.parametrize("cmd", [[sys.executable, str(MAIN)], [str(MAIN)]], ids=["python3 main.py", "./main.py"])
def test_init_line_is_exact_and_end_of_input_exits_0(cmd):
    """The init exchange is byte-exact, and the node exits 0 when its input ends."""
    if cmd == [str(MAIN)]:
        assert os.access(MAIN, os.X_OK), "main.py has no run bit"
        assert MAIN.read_bytes().startswith(b"#!"), "main.py has no shebang"
    done = subprocess.run(cmd, input=INIT, capture_output=True, timeout=20)
    assert done.stdout == INIT_OK
    assert done.returncode == 0, done.stderr


def test_output_is_compact_json_in_key_order_with_msg_ids_counting_from_0():
    """Every line the node writes, replies and RPCs alike, is compact, ordered, and numbered 0, 1, 2, ..."""
    with Net(args=LIN_KV) as net:
        net.kv.set("é", "café")
        net.kv.set("n", 1)
        assert net.call("n1", {"type": "get", "key": "é"})["value"] == "café"
        net.call("n1", {"type": "stats"})
        net.call("n1", {"type": "frobnicate"})
        net.call("n1", {"type": "write", "key": "n", "value": [1, {"b": 2}]})
        net.call("n1", {"type": "cas", "key": "n", "from": [1, {"b": 2}], "to": 3})
        net.call("n1", {"type": "invalidate", "key": "n"})
        net.call("n1", {"type": "read", "key": "n"})
        net.call("n1", {"type": "get", "key": "missing"})
        assert net.close() == {"n1": 0}
        lines = net.lines()
    assert not net.problems  # every line is strict JSON (no NaN/Infinity), a message with a dest
    assert len(lines) >= 14  # 9 replies and 5 RPCs (read é, write, cas, read n, read missing)
    for line in lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        text = line.decode()[:-1]
        msg = json.loads(text)
        assert json.dumps(msg, separators=(",", ":"), ensure_ascii=False) == text, "not compact"
        assert list(msg) == ["src", "dest", "body"]
        expected = ["type", "in_reply_to", "msg_id"] if "in_reply_to" in msg["body"] else ["type", "msg_id"]
        assert list(msg["body"])[: len(expected)] == expected
    msg_ids = [json.loads(line)["body"]["msg_id"] for line in lines]
    assert msg_ids == list(range(len(lines)))
    assert sum(json.loads(line)["dest"] == "lin-kv" for line in lines) == 5


def test_request_before_init_gets_error_11_signed_with_its_dest():
    """A get before init is refused with error 11 from the dest it was sent to; init still works after."""
    with Net(init=False) as net:
        net.send_raw("n1", raw({"type": "get", "msg_id": 7, "key": "k"}, dest="n7"))
        error = net.reply(7)
        assert error["type"] == "error" and error["code"] == 11 and error["msg_id"] == 0
        assert net.client_messages[0]["src"] == "n7"
        init_ok = net.call("n1", {"type": "init", "node_id": "n1", "node_ids": ["n1"]})
        assert init_ok["type"] == "init_ok" and init_ok["msg_id"] == 1
        assert net.call("n1", GET_K)["value"] == "value-k"
        assert net.close() == {"n1": 0} and not net.problems


# -- the herd -----------------------------------------------------------------


def test_herd_of_1000_gets_costs_one_origin_fetch():
    """1,000 gets of one cold key written in one burst: one miss, 999 collapsed, one origin fetch."""
    with Net(args=["--sim-latency", "0.2"]) as net:
        started = time.monotonic()
        replies = net.replies(net.send_many("n1", [{"type": "get", "key": "hot"}] * 1000), timeout=15)
        print(f"\nherd: 1,000 answers in {(time.monotonic() - started) * 1000:.0f} ms (origin latency 200 ms)")
        assert {r["value"] for r in replies} == {"value-hot"}
        assert caches(replies) == {"miss": 1, "collapsed": 999}
        stats = net.call("n1", {"type": "stats"})
        assert (stats["requests"], stats["misses"], stats["collapsed"], stats["origin_fetches"]) == (1000, 1, 999, 1)
        assert stats["errors"] == stats["hits"] == stats["shed"] == 0
        assert net.close() == {"n1": 0} and not net.problems


def test_waiting_herd_holds_no_threads_and_does_not_delay_hits_or_stats():
    """2,000 requests waiting on a 1 s fetch: a hit and a stats are answered in < 0.2 s, and <= 16 threads run."""
    with Net(args=["--sim-latency", "1", "--origin-timeout", "5"]) as net:
        assert net.call("n1", {"type": "get", "key": "warm"})["cache"] == "miss"
        herd = net.send_many("n1", [{"type": "get", "key": "cold"}] * 2000)
        assert net.call("n1", {"type": "stats", "key": "cold"})["waiting"] == 2000  # all admitted, all waiting

        started = time.monotonic()
        hit = net.call("n1", {"type": "get", "key": "warm"})
        hit_s = time.monotonic() - started
        started = time.monotonic()
        stats = net.call("n1", {"type": "stats"})
        stats_s = time.monotonic() - started
        with open(f"/proc/{net.pid()}/status") as status:
            threads = int(next(line for line in status if line.startswith("Threads:")).split()[1])

        print(f"\nwaiting herd: hit in {hit_s * 1000:.1f} ms, stats in {stats_s * 1000:.1f} ms, {threads} threads")
        assert not any(net.has_reply(m) for m in herd), "the herd was answered before its fetch could end"
        assert hit["cache"] == "hit" and hit_s < 0.2, f"hit took {hit_s:.3f}s"
        assert stats["in_flight"] == 1 and stats_s < 0.2, f"stats took {stats_s:.3f}s"
        assert threads <= 16, f"{threads} threads"
        assert caches(net.replies(herd, timeout=10)) == {"miss": 1, "collapsed": 1999}
        assert net.close() == {"n1": 0}


# -- malformed input -----------------------------------------------------------

UNANSWERABLE = {
    "not JSON": b"this is not json\n",
    # (a blank line is ignored quietly: tests/node/test_node_faults.py)
    "JSON array": b'[{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9100,"key":"k"}}]\n',
    "JSON string": b'"get k"\n',
    "no src": b'{"dest":"n1","body":{"type":"get","msg_id":9101,"key":"k"}}\n',
    "src not a string": b'{"src":5,"dest":"n1","body":{"type":"get","msg_id":9102,"key":"k"}}\n',
    "no msg_id": raw({"type": "get", "key": "k"}),
    "msg_id 1.5": raw({"type": "get", "msg_id": 1.5, "key": "k"}),
    'msg_id "1"': raw({"type": "get", "msg_id": "1", "key": "k"}),
    "msg_id true": raw({"type": "get", "msg_id": True, "key": "k"}),
    "msg_id null": raw({"type": "get", "msg_id": None, "key": "k"}),
    "body a list": b'{"src":"c1","dest":"n1","body":[9103]}\n',
    "body a string": b'{"src":"c1","dest":"n1","body":"get"}\n',
    "no body": b'{"src":"c1","dest":"n1"}\n',
    "10 MB of junk": b"x" * 10_000_000 + b"\n",
    "invalid UTF-8": b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9104,"key":"\xff\xfe"}}\n',
    "NaN key": b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9105,"key":NaN}}\n',
    "Infinity ttl": b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9106,"key":"k","ttl":Infinity}}\n',
    "-Infinity key": b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9107,"key":-Infinity}}\n',
}

BAD_REQUESTS = {  # msg_id -> (request body, the error code it must get)
    9201: ({"type": "get"}, 12),
    9202: ({"type": "read"}, 12),
    9203: ({"type": "get", "key": "k", "ttl": "x"}, 12),
    9204: ({"type": "get", "key": "k", "ttl": True}, 12),
    9205: ({"type": "frobnicate", "key": "k"}, 10),
    9206: ({"type": "write", "key": "k"}, 12),
    9207: ({"type": "cas", "key": "k", "to": 2}, 12),
    9208: ({"type": "cas", "key": "k", "from": 1}, 12),
    9209: ({"type": "write", "value": 1}, 12),
    9210: ({"type": "invalidate"}, 12),
}


def test_malformed_input_is_logged_or_answered_and_the_node_keeps_serving():
    """Each unanswerable line is logged to stderr and skipped; each bad request gets its error; serving goes on."""
    with Net(args=FAST) as net:
        synced = []
        for name, line in UNANSWERABLE.items():
            logged_before = len(net.stderr())
            net.send_raw("n1", line)
            synced.append(net.send("n1", {"type": "get", "key": "sync"}))
            assert net.reply(synced[-1])["value"] == "value-sync", name
            assert len(net.stderr()) > logged_before, f"{name}: nothing logged to stderr"

        for msg_id, (body, _) in BAD_REQUESTS.items():
            net.send_raw("n1", raw({**body, "msg_id": msg_id}))
        for msg_id, (body, code) in BAD_REQUESTS.items():
            error = net.reply(msg_id)
            assert (error["type"], error["code"]) == ("error", code), body
            assert isinstance(error["text"], str)

        big_key = "k" * 10_000_000
        net.send_raw("n1", raw({"type": "get", "msg_id": 9300, "key": big_key}))
        assert net.reply(9300, timeout=20)["value"] == "value-" + big_key

        synced.append(net.send("n1", {"type": "get", "key": "after"}))
        after = net.reply(synced[-1])
        assert (after["value"], after["cache"]) == ("value-after", "miss")
        assert net.close() == {"n1": 0}
    answered = [m["body"]["in_reply_to"] for m in net.client_messages if m["dest"] == "c1"]
    assert all(type(a) is int for a in answered), "a reply to a message with no integer msg_id"
    assert sorted(answered) == sorted([*synced, *BAD_REQUESTS, 9300]), "a reply to an unanswerable line"
    assert {m["dest"] for m in net.client_messages} == {"c0", "c1"}
    assert not net.problems  # every stdout line was a message


def test_deeply_nested_json_does_not_stop_the_node():
    """Lines nested deeper than Python's json recursion limit are skipped; the node keeps serving, exits 0."""
    with Net(args=FAST) as net:
        net.send_raw("n1", b"[" * 100_000 + b"\n")  # not JSON, and too deep to find out the easy way
        deep_key = b"[" * 5000 + b"]" * 5000  # valid JSON, nested deeper than the recursion limit
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9400,"key":' + deep_key + b"}}\n")
        net.send_raw("n1", raw({"type": "get", "msg_id": 9401, "key": "after"}))
        assert reply_or_fail(net, 9401)["value"] == "value-after"
        assert net.close() == {"n1": 0}


def test_key_with_a_lone_surrogate_escape_gets_a_reply():
    """"\\ud800" is valid JSON: the get gets a reply (value or error 12), and msg_ids stay gapless."""
    with Net(args=FAST) as net:
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9500,"key":"\\ud800"}}\n')
        net.send_raw("n1", raw({"type": "get", "msg_id": 9501, "key": "after"}))
        assert reply_or_fail(net, 9501)["value"] == "value-after"
        reply = reply_or_fail(net, 9500, timeout=0.5)  # it would have come before the reply to 9501
        assert reply["type"] == "get_ok" or reply.get("code") == 12
        assert net.close() == {"n1": 0}
    assert [json.loads(line)["body"]["msg_id"] for line in net.lines()] == [0, 1, 2]


INFINITE = {  # how an inf gets into the node -> (flags, requests, sent one after another)
    "a value of 1e400 written to the sim, then read": (FAST, [
        b'{"src":"c1","dest":"n1","body":{"type":"write","msg_id":9550,"key":"w","value":-1e400}}\n',
        b'{"src":"c1","dest":"n1","body":{"type":"read","msg_id":9551,"key":"w"}}\n']),
    "a key of 1e400 sent on to lin-kv": ([*LIN_KV, "--origin-timeout", "0.3"], [
        b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9550,"key":1e400}}\n']),
    "a ttl of 1e400, then the key's stats": (FAST, [
        b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9550,"key":"k","ttl":1e400}}\n',
        b'{"src":"c1","dest":"n1","body":{"type":"stats","msg_id":9551,"key":"k"}}\n']),
}


@pytest.mark.parametrize("case", INFINITE)
def test_an_infinite_number_never_puts_non_json_infinity_on_stdout(case):
    """1e400 is valid JSON that Python reads as inf; whatever the node answers, it must never write `Infinity`."""
    args, lines = INFINITE[case]
    with Net(args=args) as net:
        for msg_id, line in enumerate(lines, start=9550):
            net.send_raw("n1", line)
            try:
                net.reply(msg_id, timeout=1)  # raises AssertionError at once if a line is not JSON
            except TimeoutError:
                pass  # no reply is one way to refuse it (as a line that is not JSON)
        assert net.call("n1", {"type": "stats"})["type"] == "stats_ok"
        assert net.close() == {"n1": 0}
        assert not net.problems, net.problems


def test_line_over_64_mib_is_skipped_and_the_next_request_answered():
    """A 65 MiB line is skipped (logged) without stopping the node; the request after it is answered."""
    with Net(args=FAST) as net:
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9600,"key":"'
                     + b"k" * (65 << 20) + b'"}}\n')
        net.send_raw("n1", raw({"type": "get", "msg_id": 9601, "key": "after"}))
        assert net.reply(9601, timeout=30)["value"] == "value-after"
        assert not net.has_reply(9600)
        assert "skip" in net.stderr().lower()
        assert net.close() == {"n1": 0}


# -- keys --------------------------------------------------------------------------


def test_keys_are_the_same_exactly_when_their_canonical_json_is():
    """1, 1.0, "1", true and [1] are five keys; {"a":1,"b":2} and {"b":2,"a":1} are one; so are "é" and "\\u00e9"."""
    with Net(args=FAST) as net:
        distinct = [1, 1.0, "1", True, [1], {"a": 1, "b": 2}, "é"]
        for key in distinct:
            reply = net.call("n1", {"type": "get", "key": key})
            assert (reply["cache"], reply["value"]) == ("miss", sim_value(key)), key
        assert net.call("n1", {"type": "get", "key": 1.0})["value"] == "value-1.0"
        same = net.call("n1", {"type": "get", "key": {"b": 2, "a": 1}})
        assert (same["cache"], same["value"]) == ("hit", 'value-{"a":1,"b":2}')
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":9700,"key":"\\u00e9"}}\n')
        assert net.reply(9700)["cache"] == "hit"

        assert net.call("n1", {"type": "stats"})["entries"] == len(distinct)
        one = net.call("n1", {"type": "stats", "key": 1})
        obj = net.call("n1", {"type": "stats", "key": {"b": 2, "a": 1}})
        assert (one["requests"], one["misses"]) == (1, 1)
        assert (obj["requests"], obj["misses"], obj["hits"]) == (2, 1, 1)


JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=12)


def reordered(value: object) -> object:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_any_json_key_is_served_as_value_plus_its_canonical_json():
    """For any JSON key, the sim's value is "value-" + canonical JSON, and key order in objects does not matter."""
    with Net(args=FAST) as net:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(JSON_VALUES)
        def check(key):
            first = net.call("n1", {"type": "get", "key": key})
            assert first["value"] == sim_value(key)
            again = net.call("n1", {"type": "get", "key": reordered(key)})
            assert (again["cache"], again["value"]) == ("hit", sim_value(key))

        check()
        assert net.close() == {"n1": 0} and not net.problems


# -- end of input ----------------------------------------------------------------------


def test_end_of_input_answers_every_request_read_then_exits_0():
    """Gets for 300 cold keys, then stdin closed at once: all 300 are answered, then the node exits 0."""
    with Net(args=["--sim-latency", "0.3"]) as net:
        ids = net.send_many("n1", [{"type": "get", "key": f"cold-{i}"} for i in range(300)])
        assert net.close() == {"n1": 0}
        replies = net.replies(ids, timeout=0)
    assert [r["value"] for r in replies] == [f"value-cold-{i}" for i in range(300)]
    assert not net.problems


def test_end_of_input_with_a_silent_origin_answers_error_0_by_the_origin_timeout():
    """With lin-kv silent and stdin closed, every waiting get gets error 0 after --origin-timeout, then exit 0."""
    with Net(args=[*LIN_KV, "--origin-timeout", "0.5"]) as net:
        net.kv.fail = "drop"
        ids = net.send_many("n1", [{"type": "get", "key": f"k{i % 3}"} for i in range(30)])
        started = time.monotonic()
        assert net.close() == {"n1": 0}
        took = time.monotonic() - started
        assert {(r["type"], r["code"]) for r in net.replies(ids, timeout=0)} == {("error", 0)}
        assert net.kv.count("read") == 3
        assert took < 4, f"exited {took:.2f}s after end of input"


# -- write, cas, invalidate (sim origin) --------------------------------------------------


def test_write_then_get_returns_the_new_value():
    """A write goes to the sim origin and drops the entry: the next get misses and returns the new value."""
    with Net(args=FAST) as net:
        assert net.call("n1", GET_K)["value"] == "value-k"
        assert net.call("n1", {"type": "write", "key": "k", "value": {"v": 2}})["type"] == "write_ok"
        reply = net.call("n1", GET_K)
        assert (reply["cache"], reply["value"]) == ("miss", {"v": 2})
        assert net.call("n1", {"type": "read", "key": "k"})["value"] == {"v": 2}


def test_cas_mismatch_is_error_22_and_a_match_changes_the_value():
    """cas with a wrong `from` gets error 22 and changes nothing; with the right one, cas_ok and the new value."""
    with Net(args=FAST) as net:
        assert net.call("n1", GET_K)["value"] == "value-k"
        error = net.call("n1", {"type": "cas", "key": "k", "from": "nope", "to": "x"})
        assert (error["type"], error["code"]) == ("error", 22)
        assert net.call("n1", GET_K)["value"] == "value-k"
        assert net.call("n1", {"type": "cas", "key": "k", "from": "value-k", "to": "x"})["type"] == "cas_ok"
        assert net.call("n1", GET_K)["value"] == "x"


def test_invalidate_makes_the_next_get_a_miss_even_during_a_fetch():
    """After invalidate the next get misses; a get after an invalidate does not join the fetch in flight before it."""
    with Net(args=["--sim-latency", "0.3"]) as net:
        assert net.call("n1", GET_K)["cache"] == "miss"
        assert net.call("n1", GET_K)["cache"] == "hit"
        assert net.call("n1", {"type": "invalidate", "key": "k"})["type"] == "invalidate_ok"
        assert net.call("n1", GET_K)["cache"] == "miss"

        before, drop, after = net.send_many("n1", [{"type": "get", "key": "j"}, {"type": "invalidate", "key": "j"},
                                                   {"type": "get", "key": "j"}])
        assert net.reply(drop)["type"] == "invalidate_ok"
        assert [net.reply(m)["cache"] for m in (before, after)] == ["miss", "miss"]
        assert net.call("n1", {"type": "stats", "key": "j"})["origin_fetches"] == 2
        assert net.call("n1", {"type": "invalidate", "key": "never-seen"})["type"] == "invalidate_ok"


# -- the lin-kv origin, played by the harness ----------------------------------------------


def test_lin_kv_herd_costs_one_service_read():
    """500 gets of a cold key cost lin-kv one read; each get is answered with its value."""
    with Net(args=LIN_KV) as net:
        net.kv.set("hot", [1, 2])
        net.kv.hold = True
        ids = net.send_many("n1", [{"type": "get", "key": "hot"}] * 500)
        assert net.call("n1", {"type": "stats", "key": "hot"})["waiting"] == 500
        net.kv.release()
        replies = net.replies(ids)
        assert caches(replies) == {"miss": 1, "collapsed": 499}
        assert all(r["value"] == [1, 2] for r in replies)
        assert net.kv.count("read") == 1
        assert net.kv.requests[0] == {"type": "read", "msg_id": 1, "key": "hot"}


def test_get_and_read_waiting_on_one_fetch_each_get_their_own_schema():
    """gets and reads interleaved on one cold key share one fetch, yet each keeps its reply's shape:
    get_ok with value and cache, read_ok with the value alone."""
    with Net(args=LIN_KV) as net:
        net.kv.set("k", {"big": "x" * 1000})
        net.kv.hold = True
        bodies = [{"type": "get" if i % 3 else "read", "key": "k"} for i in range(300)]
        ids = net.send_many("n1", bodies)
        assert net.call("n1", {"type": "stats", "key": "k"})["waiting"] == 300
        net.kv.release()
        for body, reply in zip(bodies, net.replies(ids), strict=True):
            if body["type"] == "get":
                assert reply["type"] == "get_ok" and set(reply) == {"type", "in_reply_to", "msg_id", "value", "cache"}
            else:
                assert reply == {"type": "read_ok", "in_reply_to": reply["in_reply_to"], "msg_id": reply["msg_id"],
                                 "value": {"big": "x" * 1000}}
            assert reply["value"] == {"big": "x" * 1000}
        assert net.kv.count("read") == 1


def test_lin_kv_error_is_shared_by_every_waiter_and_not_cached():
    """lin-kv answering error 11 gives all 200 waiters error 11 from one read; the next get reads again."""
    with Net(args=LIN_KV) as net:
        net.kv.set("k", "v")
        net.kv.fail, net.kv.hold = "error", True
        ids = net.send_many("n1", [GET_K] * 200)
        assert net.call("n1", {"type": "stats", "key": "k"})["waiting"] == 200
        net.kv.release()
        assert {(r["type"], r["code"]) for r in net.replies(ids)} == {("error", 11)}
        assert net.kv.count("read") == 1
        net.kv.fail, net.kv.hold = None, False
        assert net.call("n1", GET_K)["value"] == "v"
        assert net.kv.count("read") == 2
        stats = net.call("n1", {"type": "stats", "key": "k"})
        assert (stats["errors"], stats["origin_errors"], stats["origin_fetches"]) == (200, 1, 2)


def test_lin_kv_that_never_answers_gives_every_waiter_error_0_at_the_timeout():
    """lin-kv silent: all 100 waiters get error 0 once --origin-timeout (0.5 s) has passed, not before."""
    with Net(args=[*LIN_KV, "--origin-timeout", "0.5"]) as net:
        net.kv.fail = "drop"
        started = time.monotonic()
        replies = net.replies(net.send_many("n1", [GET_K] * 100), timeout=5)
        took = time.monotonic() - started
        assert {(r["type"], r["code"]) for r in replies} == {("error", 0)}
        assert 0.45 <= took < 3, f"took {took:.2f}s"
        assert net.kv.count("read") == 1


def test_lin_kv_missing_key_is_error_20_cached_for_the_negative_ttl():
    """A key lin-kv lacks is error 20, remembered for --negative-ttl without another read, then read again."""
    with Net(args=[*LIN_KV, "--negative-ttl", "0.5"]) as net:
        first = net.call("n1", GET_K)
        assert (first["type"], first["code"]) == ("error", 20)
        net.kv.set("k", "now it exists")
        second = net.call("n1", {"type": "read", "key": "k"})
        assert (second["type"], second["code"]) == ("error", 20)
        assert net.kv.count("read") == 1
        time.sleep(0.6)  # let the negative entry expire: this waits for time itself, not for a reply
        assert net.call("n1", GET_K)["value"] == "now it exists"
        assert net.kv.count("read") == 2


def test_stray_reply_with_in_reply_to_0_is_ignored_and_msg_id_0_requests_are_answered():
    """A lin-kv reply matching nothing (in_reply_to 0: init_ok's msg_id) is dropped; the real reply still counts."""
    with Net(args=LIN_KV) as net:
        net.kv.set("k", "real")
        net.kv.hold = True
        pending = net.send("n1", GET_K)
        net.kv.wait_count("read", 1)
        net.send_raw("n1", raw({"type": "read_ok", "in_reply_to": 0, "msg_id": 99, "value": "bogus"}, src="lin-kv"))
        net.send_raw("n1", raw({"type": "get", "msg_id": 0, "key": "other"}, src="c9"))  # a client's msg_id 0
        net.kv.hold = False
        net.kv.release()
        assert net.reply(pending)["value"] == "real"
        zero = net.reply(0, client="c9")
        assert (zero["type"], zero["code"]) == ("error", 20)
        assert [b["type"] for b in net.kv.requests] == ["read", "read"]


@pytest.mark.parametrize("order", ["read answered after write_ok", "read answered before write_ok"])
@pytest.mark.parametrize("op", ["write", "cas"])
def test_after_write_ok_no_get_is_served_the_value_read_before_the_write(op, order):
    """A read in flight at lin-kv, then a write/cas completes: later gets see the new value, never the old."""
    with Net(args=LIN_KV) as net:
        net.kv.set("k", "old")
        net.kv.hold = True
        early = net.send("n1", GET_K)
        net.kv.wait_count("read", 1)  # the read is at the service, its reply ("old") parked
        change = {"type": "write", "key": "k", "value": "new"} if op == "write" else \
                 {"type": "cas", "key": "k", "from": "old", "to": "new"}
        if order == "read answered after write_ok":
            net.kv.hold = False  # the write is answered at once; the old read stays parked
            assert net.call("n1", change)["type"] == f"{op}_ok"
        else:
            written = net.send("n1", change)
            net.kv.wait_count(op, 1)
            net.kv.hold = False
            net.kv.release()  # the old read's reply first, then the write's
            assert net.reply(written)["type"] == f"{op}_ok"

        after = net.call("n1", GET_K)
        assert (after["value"], after["cache"]) == ("new", "miss"), "served a value read before the write"
        net.kv.release()
        assert net.reply(early)["type"] == "get_ok"
        again = net.call("n1", GET_K)
        assert (again["value"], again["cache"]) == ("new", "hit"), "the old read refilled the cache"
        assert net.kv.count("read") == 2


def test_node_cut_off_from_lin_kv_times_out_then_recovers_when_healed():
    """With the link to lin-kv cut, a get gets error 0 at --origin-timeout; once healed, the next get reads."""
    with Net(args=[*LIN_KV, "--origin-timeout", "0.3"]) as net:
        net.kv.set("k", "v")
        net.cut("n1", "lin-kv")
        cut_off = net.call("n1", GET_K)
        assert (cut_off["type"], cut_off["code"]) == ("error", 0)
        assert net.kv.count("read") == 0  # the read never reached the service
        net.heal()
        assert net.call("n1", GET_K)["value"] == "v"
        assert net.kv.count("read") == 1


@pytest.mark.parametrize("origin", ["sim", "lin-kv"])
def test_read_write_cas_replies_have_exactly_the_lin_kv_schema(origin):
    """read_ok carries only value; write_ok and cas_ok only type, in_reply_to and msg_id."""
    with Net(args=["--origin", origin, "--sim-latency", "0"]) as net:
        assert set(net.call("n1", {"type": "write", "key": "s", "value": 1})) == {"type", "in_reply_to", "msg_id"}
        read = net.call("n1", {"type": "read", "key": "s"})
        assert read == {"type": "read_ok", "in_reply_to": read["in_reply_to"], "msg_id": read["msg_id"], "value": 1}
        assert set(net.call("n1", {"type": "cas", "key": "s", "from": 1, "to": 2})) == {"type", "in_reply_to",
                                                                                      "msg_id"}
        read = net.call("n1", {"type": "read", "key": "s"})
        assert set(read) == {"type", "in_reply_to", "msg_id", "value"} and read["value"] == 2
        if origin == "lin-kv":
            missing = net.call("n1", {"type": "cas", "key": "absent", "from": 1, "to": 2})
            assert (missing["type"], missing["code"]) == ("error", 20)
            assert [b["type"] for b in net.kv.requests] == ["write", "read", "cas", "read", "cas"]


# -- stats, ttl, eviction -------------------------------------------------------------------------

KEY_STATS = {"requests", "hits", "stale", "misses", "collapsed", "errors", "origin_fetches", "origin_errors",
             "shed", "waiting", "cached", "ttl_left", "last_fetch_s"}


def test_stats_for_one_key_has_every_field():
    """stats with a key reports its counters, waiting, cached, ttl_left and last_fetch_s; an unseen key, zeros."""
    with Net(args=["--sim-latency", "0.1", "--ttl", "30"]) as net:
        net.call("n1", GET_K)
        net.call("n1", GET_K)
        stats = net.call("n1", {"type": "stats", "key": "k"})
        assert KEY_STATS <= set(stats)
        assert (stats["requests"], stats["misses"], stats["hits"], stats["origin_fetches"]) == (2, 1, 1, 1)
        assert stats["cached"] is True and stats["waiting"] == 0
        assert 25 < stats["ttl_left"] <= 30 and 0.08 <= stats["last_fetch_s"] < 1

        unseen = net.call("n1", {"type": "stats", "key": ["never", "seen"]})
        assert KEY_STATS <= set(unseen)
        assert all(unseen[f] == 0 for f in KEY_STATS - {"cached", "ttl_left", "last_fetch_s"})
        assert (unseen["cached"], unseen["ttl_left"], unseen["last_fetch_s"]) == (False, None, None)


def test_request_ttl_sets_the_lifetime_of_the_fill_it_leads():
    """A get's own "ttl" decides how long the value it fetched stays fresh."""
    with Net(args=FAST) as net:
        net.call("n1", {"type": "get", "key": "short", "ttl": 0.3})
        assert 0 < net.call("n1", {"type": "stats", "key": "short"})["ttl_left"] <= 0.3
        net.call("n1", {"type": "get", "key": "none", "ttl": 0})
        assert net.call("n1", {"type": "get", "key": "none"})["cache"] == "miss"


def test_max_entries_evicts_the_least_recently_used_key():
    """With --max-entries 2 --policy lru, a third key evicts the least recently used one, which then misses."""
    with Net(args=[*FAST, "--max-entries", "2", "--policy", "lru"]) as net:
        for key in ("a", "b", "a", "c"):
            net.call("n1", {"type": "get", "key": key})
        stats = net.call("n1", {"type": "stats"})
        assert (stats["entries"], stats["evictions"]) == (2, 1)
        assert net.call("n1", {"type": "get", "key": "a"})["cache"] == "hit"
        assert net.call("n1", {"type": "get", "key": "b"})["cache"] == "miss"


def test_max_bytes_counts_encoded_keys_and_values_and_evicts_to_hold_it():
    """stats reports the bytes held (key and value as JSON); CF_MAX_BYTES bounds them like --max-bytes."""
    with Net(args=FAST) as net:
        value = net.call("n1", {"type": "get", "key": "a"})["value"]
        stats = net.call("n1", {"type": "stats"})
        one = len(json.dumps("a")) + len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        assert stats["bytes"] == one, (stats, value)
    with Net(args=[*FAST, "--policy", "lru"], env={"CF_MAX_BYTES": str(2 * one + 1)}) as net:
        for key in ("a", "b", "a", "c"):
            net.call("n1", {"type": "get", "key": key})
        stats = net.call("n1", {"type": "stats"})
        assert (stats["entries"], stats["evictions"], stats["bytes"]) == (2, 1, 2 * one)
        assert net.call("n1", {"type": "get", "key": "a"})["cache"] == "hit"
        assert net.call("n1", {"type": "get", "key": "b"})["cache"] == "miss"


JSON_ITEMS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(max_codepoint=0x7F)) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@given(JSON_ITEMS)
def test_the_bytes_counted_are_those_of_the_json_on_the_wire(item):
    """A plain ASCII string is counted without being encoded; every item counts as its compact JSON's bytes."""
    assert json_bytes(item) == len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


# -- flags -------------------------------------------------------------------------------------


def test_flags_are_read_from_cf_environment_variables_and_flags_win():
    """CF_SIM_LATENCY, CF_TTL and CF_ORIGIN configure the node; a flag on the command line beats its variable."""
    env = {"CF_SIM_LATENCY": "0.3", "CF_TTL": "30"}
    with Net(env=env) as net:
        net.call("n1", GET_K)
        stats = net.call("n1", {"type": "stats", "key": "k"})
        assert stats["last_fetch_s"] >= 0.25 and 25 < stats["ttl_left"] <= 30
    with Net(args=["--sim-latency", "0.01", "--ttl", "7"], env=env) as net:
        net.call("n1", GET_K)
        stats = net.call("n1", {"type": "stats", "key": "k"})
        assert stats["last_fetch_s"] < 0.2 and stats["ttl_left"] <= 7
    with Net(env={"CF_ORIGIN": "lin-kv"}) as net:
        net.kv.set("k", "from lin-kv")
        assert net.call("n1", GET_K)["value"] == "from lin-kv"
        assert net.kv.count("read") == 1


BAD_FLAGS = [
    (["--ttl", "abc"], {}),
    (["--ttl", "-1"], {}),
    (["--origin", "memcached"], {}),
    (["--jitter", "1"], {}),
    (["--max-waiters", "1.5"], {}),
    (["--sim-error-rate", "2"], {}),
    (["--log-level", "loud"], {}),
    (["--no-such-flag"], {}),
    ([], {"CF_TTL": "abc"}),
    ([], {"CF_ORIGIN": "nope"}),
]


@pytest.mark.parametrize("args, env", BAD_FLAGS, ids=[" ".join(a) or f"{e}" for a, e in BAD_FLAGS])
def test_bad_flag_value_exits_non_zero_with_a_message_on_stderr(args, env):
    """A bad flag or CF_ variable stops the node at start: non-zero exit, a message on stderr, nothing on stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CF_")}
    done = subprocess.run([sys.executable, str(MAIN), *args], input=INIT, capture_output=True, timeout=20,
                          env={**clean, **env})
    assert done.returncode != 0
    assert done.stderr.strip()
    assert done.stdout == b""
