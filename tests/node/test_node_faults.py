"""The node as a process: every input and every fault answered.

Each test drives `python3 main.py` as a process (through tests/support/net.py, or
subprocess directly where the pipes themselves are the subject) and pins one defect
a fuzzer or a new user found: a reply that never came, an error 13 for input, a
traceback, a line on stdout that is not a Maelstrom message, a log line without bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.net import MAIN, Net

pytestmark = pytest.mark.process  # starts node processes

FAST = ["--sim-latency", "0"]
LIN_KV = ["--origin", "lin-kv"]
INIT = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}


def line(body: dict, src: Any = "c1", dest: Any = "n1", ascii_only: bool = True) -> bytes:
    """One request line built by hand (ensure_ascii: a lone surrogate goes as its \\u escape)."""
    return json.dumps({"src": src, "dest": dest, "body": body}, separators=(",", ":"),
                      ensure_ascii=ascii_only).encode() + b"\n"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_json(depth: int) -> bytes:
    """JSON text of a value nested `depth` deep, made without recursion (json.dumps would hit the limit)."""
    return b"[" * depth + b"1" + b"]" * depth


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CF_")}, **extra}


def assert_quiet_stderr(text: str) -> None:
    assert "Traceback" not in text, text[-2000:]


# -- 1. a message spanning lines ---------------------------------------------------------------

PRETTY_INIT = json.dumps({**INIT, "body": {**INIT["body"], "msg_id": 9000, "node_ids": ["n1", "n2"]}},
                         indent=2).encode() + b"\n"


def test_pretty_printed_init_over_13_lines_is_answered():
    """The sample session's init, pretty-printed over 13 lines as a person types it, gets its init_ok."""
    assert PRETTY_INIT.count(b"\n") == 13
    with Net(init=False, args=[*FAST, "--peer-timeout", "0.1"]) as net:  # n2 never answers: n1 acts alone
        net.send_raw("n1", PRETTY_INIT)
        assert net.reply(9000, client="c0")["type"] == "init_ok"
        pretty_get = json.dumps({"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 9001, "key": "k"}},
                                indent=4).encode() + b"\n"
        net.send_raw("n1", pretty_get)
        assert net.reply(9001)["value"] == "value-k"
        assert net.close() == {"n1": 0}
        assert "WARNING" not in net.stderr(), net.stderr()


def test_an_unterminated_fragment_never_swallows_the_message_after_it():
    """A fragment that never ends is dropped when a complete message follows, one-line or pretty-printed."""
    with Net(args=FAST) as net:
        net.send_raw("n1", b'{\n  "src": "c1",\n  "dest": "n1",\n')  # a message left unfinished
        net.send_raw("n1", line({"type": "get", "msg_id": 9010, "key": "one-line"}))
        assert net.reply(9010)["value"] == "value-one-line"
        net.send_raw("n1", b'{"src": "c1", "body": {"type": "get",\n')  # unfinished again
        net.send_raw("n1", json.dumps({"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 9011,
                                                                           "key": "pretty"}}, indent=2).encode()
                     + b"\n")
        assert net.reply(9011)["value"] == "value-pretty"
        net.send_raw("n1", b'{"src": "c1", "body": {"type": "get", "key": [\n')  # a list: a message could go in
        net.send_raw("n1", line({"type": "get", "msg_id": 9012, "key": "in-a-list"}))
        assert net.reply(9012)["value"] == "value-in-a-list"
        assert net.close() == {"n1": 0}


def test_blank_lines_are_ignored_quietly():
    """Blank lines (empty, spaces, CRLF) log nothing and cost nothing."""
    with Net(args=FAST) as net:
        net.send_raw("n1", b"\n" * 50 + b"   \n\t\n\r\n")
        assert net.call("n1", {"type": "get", "key": "k"})["value"] == "value-k"
        assert net.close() == {"n1": 0}
        assert net.stderr() == "", net.stderr()


def test_a_fragment_over_its_bound_is_dropped_with_one_log_line():
    """A multi-line message bigger than the fragment bound (1 MiB) is skipped as one, logged once; the
    node goes on. A smaller pretty-printed write is served."""
    with Net(args=FAST) as net:
        small = {"src": "c1", "dest": "n1", "body": {"type": "write", "msg_id": 9020, "key": "w",
                                                     "value": ["x" * 100] * 1000}}
        net.send_raw("n1", json.dumps(small, indent=1).encode() + b"\n")
        assert net.reply(9020)["type"] == "write_ok"
        big = {"src": "c1", "dest": "n1", "body": {"type": "write", "msg_id": 9021, "key": "w",
                                                   "value": ["x" * 1000] * 1200}}
        net.send_raw("n1", json.dumps(big, indent=1).encode() + b"\n")
        assert net.call("n1", {"type": "read", "key": "w"})["value"] == ["x" * 100] * 1000
        assert not net.has_reply(9021)
        assert net.close() == {"n1": 0}
        logged = [ln for ln in net.stderr().splitlines() if ln.strip()]
        assert 1 <= len(logged) <= 3, logged[:5]


# -- 2. deep values and keys -------------------------------------------------------------------


def test_a_value_nested_988_deep_is_refused_and_the_key_stays_served():
    """A write of a value nested 988 deep gets error 12 (not accepted, then unanswerable); a key that deep
    gets error 12, never 13; every request gets one reply."""
    with Net(args=FAST) as net:
        deep = nested_json(988)
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"write","msg_id":9100,"key":"k","value":'
                     + deep + b"}}\n")
        refused = net.reply(9100)
        assert (refused["type"], refused["code"], refused["msg_id"]) == ("error", 12, 1), refused
        for msg_id in (9101, 9102):  # a miss, then a hit
            net.send_raw("n1", line({"type": "get", "msg_id": msg_id, "key": "k"}))
            assert net.reply(msg_id)["value"] == "value-k"
        for msg_id, type_ in enumerate(("get", "read", "write", "invalidate", "stats"), start=9103):
            net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"%s","msg_id":%d,"value":1,"key":'
                         % (type_.encode(), msg_id) + deep + b"}}\n")
            assert (net.reply(msg_id)["type"], net.reply(msg_id)["code"]) == ("error", 12), type_
        net.send_raw("n1", b'{"src":"c1","dest":"n1","body":{"type":"cas","msg_id":9110,"key":"k","from":1,"to":'
                     + deep + b"}}\n")
        assert net.reply(9110)["code"] == 12
        assert net.close(timeout=5) == {"n1": 0}
        assert_quiet_stderr(net.stderr())


def test_a_value_nested_100_deep_is_served():
    with Net(args=FAST) as net:
        value = nested(100, "leaf")
        assert net.call("n1", {"type": "write", "key": "k", "value": value})["type"] == "write_ok"
        assert net.call("n1", {"type": "get", "key": "k"})["value"] == value


# -- 3. a lone surrogate on a cluster -------------------------------------------------------------

SURROGATE = "\ud800"


@pytest.mark.parametrize("origin", [["--sim-latency", "0.01"], LIN_KV])
def test_a_lone_surrogate_key_is_served_on_a_cluster(origin):
    """"\\ud800" is a key like any other on two nodes: get, write, cas and invalidate are answered."""
    with Net(nodes=2, args=[*origin, "--origin-timeout", "2"]) as net:
        net.kv.set(SURROGATE, "v0")
        for node in ("n1", "n2"):
            base = 9200 if node == "n1" else 9300
            requests = [{"type": "write", "key": SURROGATE, "value": "v1"},
                        {"type": "get", "key": SURROGATE},
                        {"type": "cas", "key": SURROGATE, "from": "v1", "to": "v2"},
                        {"type": "invalidate", "key": SURROGATE},
                        {"type": "read", "key": SURROGATE},
                        {"type": "write", "key": SURROGATE, "value": "v1"}]
            replies = []
            for i, body in enumerate(requests):
                net.send_raw(node, line({**body, "msg_id": base + i}, dest=node))
                replies.append(net.reply(base + i))
            assert [r["type"] for r in replies] == ["write_ok", "get_ok", "cas_ok", "invalidate_ok", "read_ok",
                                                    "write_ok"], replies
            if origin == LIN_KV:  # (each node has its own sim: a write changes only the taker's)
                assert replies[1]["value"] == "v1" and replies[4]["value"] == "v2"
        assert net.close() == {"n1": 0, "n2": 0}
        assert not net.problems


# -- 4. a ttl no double holds -------------------------------------------------------------------


def test_a_401_digit_ttl_costs_only_its_own_request():
    """ttl = 10**400 gets error 12 at once; another client's get for the same key, sent with it, is
    served by its own fetch; the counters stay sane."""
    with Net(args=["--sim-latency", "0.2"]) as net:
        net.send_raw("n1", line({"type": "get", "msg_id": 9400, "key": "k", "ttl": 10**400})
                     + line({"type": "get", "msg_id": 9401, "key": "k"}, src="c2"))
        started = time.monotonic()
        assert net.reply(9400)["code"] == 12
        served = net.reply(9401, client="c2")
        assert (served["type"], served["value"], served["cache"]) == ("get_ok", "value-k", "miss")
        assert time.monotonic() - started < 0.9  # not at the 1 s origin deadline
        stats = net.call("n1", {"type": "stats"})
        assert (stats["in_flight"], stats["entries"], stats["errors"]) == (0, 1, 0), stats


# -- 5. timeouts beyond what a thread can wait ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--origin-timeout", "--peer-timeout"])
def test_a_huge_timeout_flag_is_handled(flag):
    """A timeout of 1e10 s (beyond threading.TIMEOUT_MAX) means "wait that long": fetches finish and the
    node exits 0 at end of input."""
    with Net(nodes=2, args=[flag, "1e10", "--sim-latency", "0.01"]) as net:
        for i in range(4):  # on both nodes; each key owned by one of them
            node = "n1" if i % 2 else "n2"
            reply = net.call(node, {"type": "get", "key": f"k{i}"}, timeout=5)
            assert reply["value"] == f"value-k{i}"
        assert net.close(timeout=10) == {"n1": 0, "n2": 0}
        assert_quiet_stderr(net.stderr("n1") + net.stderr("n2"))


# -- 6. a closed stdout -----------------------------------------------------------------------------


def start_node(*args: str, **env: str) -> tuple[subprocess.Popen, Any]:
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, str(MAIN), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, env=clean_env(**env))
    return proc, stderr


def read_stderr(stderr: Any) -> str:
    stderr.seek(0)
    return stderr.read().decode(errors="replace")


def init_and_close_stdout(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INIT).encode() + b"\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["body"]["type"] == "init_ok"
    proc.stdout.close()  # as `| head -1` does


def feed(proc: subprocess.Popen, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the node has gone already: fine


@pytest.mark.parametrize("latency", ["0", "0.2"], ids=["hits and misses", "only fetch replies pending"])
def test_a_closed_stdout_ends_the_node_promptly_and_quietly(latency):
    """`... | python3 main.py | head -1`: the node exits 0 within a second or two, with no traceback."""
    proc, stderr = start_node("--sim-latency", latency)
    try:
        init_and_close_stdout(proc)
        feed(proc, b"".join(line({"type": "get", "msg_id": i, "key": f"k{i % 7}"}) for i in range(3000)))
        stdin_closed = time.monotonic()
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - stdin_closed < 3
        text = read_stderr(stderr)
        assert_quiet_stderr(text)
        assert len(text) < 1000, text[:2000]
    finally:
        proc.kill()
        proc.wait()


# -- 7. signals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_node_promptly_with_no_traceback(signum):
    """SIGINT and SIGTERM end the node at once (it dies by that signal, as a shell expects), saying on
    stderr how many requests it leaves unanswered; no traceback."""
    with Net(args=[*LIN_KV, "--origin-timeout", "30"]) as net:
        net.kv.hold = True  # a get waits on the service
        net.send("n1", {"type": "get", "key": "k"})
        net.kv.wait_count("read", 1)
        os.kill(net.pid(), signum)
        started = time.monotonic()
        code = net.nodes["n1"].proc.wait(timeout=10)
        assert time.monotonic() - started < 3
        assert code == -signum
        text = net.stderr()
        assert_quiet_stderr(text)
        assert signal.Signals(signum).name in text and "1 request" in text, text


# -- 8. bad answers from a lin-kv service -----------------------------------------------------------


def odd_service(net: Net, answer: Callable[[dict], bytes | None]) -> None:
    """Play lin-kv with `answer(request_message) -> the raw reply line` (None: answer as lin-kv would)."""
    normal = net.kv.handle

    def handle(msg: dict) -> None:
        reply = answer(msg)
        if reply is None:
            normal(msg)
        else:
            net.send_raw(msg["src"], reply)

    net.kv.handle = handle  # type: ignore[method-assign]


def service_reply(msg: dict, body_text: str) -> bytes:
    return (f'{{"src":"lin-kv","dest":"{msg["src"]}","body":{{"msg_id":77,"in_reply_to":{msg["body"]["msg_id"]},'
            f'{body_text}}}}}\n').encode()


ODD_READ_REPLIES = {
    "read_ok with 1e400": '"type":"read_ok","value":1e400',
    "error 22 on a read": '"type":"error","code":22,"text":"odd"',
    "error 13 on a read": '"type":"error","code":13,"text":"odd"',
    "write_ok to a read": '"type":"write_ok"',
    "no type, a value": '"value":5',
    "cas_ok with a value": '"type":"cas_ok","value":5',
    "read_ok with a string code as error": '"type":"error","code":"20","text":"odd"',
    "read_ok with a value nested 500 deep": '"type":"read_ok","value":' + nested_json(500).decode(),
}


@pytest.mark.parametrize("case", ODD_READ_REPLIES)
def test_a_bad_answer_to_a_read_is_error_11_at_once(case):
    """Whatever odd thing lin-kv answers to a read becomes error 11 for every waiter, now, not at the
    deadline, and is not cached."""
    with Net(args=[*LIN_KV, "--origin-timeout", "30"]) as net:
        odd_service(net, lambda msg: service_reply(msg, ODD_READ_REPLIES[case]))
        for type_ in ("get", "read"):
            started = time.monotonic()
            reply = net.call("n1", {"type": type_, "key": "k"}, timeout=10)
            assert (reply["type"], reply.get("code")) == ("error", 11), reply
            assert time.monotonic() - started < 5
        assert net.close() == {"n1": 0} and not net.problems
        assert_quiet_stderr(net.stderr())


# What lin-kv answers a write or cas oddly, and the code the client gets: 11 (definite) only when the
# service's own code says the update did not happen; otherwise it may have: 13, never a definite code.
ODD_WRITE_REPLIES = {
    "read_ok to a write": ("write", '"type":"read_ok","value":1', 13),
    "cas_ok to a write": ("write", '"type":"cas_ok"', 13),
    "error 22 on a write": ("write", '"type":"error","code":22,"text":"odd"', 11),
    "no type to a cas": ("cas", '"value":1', 13),
    "write_ok to a cas": ("cas", '"type":"write_ok"', 13),
    "error 0 on a cas": ("cas", '"type":"error","code":0,"text":"odd"', 13),
    "error 13 on a write": ("write", '"type":"error","code":13,"text":"crashed"', 13),
}


@pytest.mark.parametrize("case", ODD_WRITE_REPLIES)
def test_a_bad_answer_to_a_write_or_cas_is_definite_only_when_the_service_says_so(case):
    op, body_text, code = ODD_WRITE_REPLIES[case]
    with Net(args=[*LIN_KV, "--origin-timeout", "30"]) as net:
        odd_service(net, lambda msg: service_reply(msg, body_text))
        request = {"type": "write", "key": "k", "value": 1} if op == "write" else \
            {"type": "cas", "key": "k", "from": 1, "to": 2}
        reply = net.call("n1", request, timeout=10)
        assert (reply["type"], reply.get("code")) == ("error", code), reply


def test_a_reply_matches_a_request_only_by_an_integer_in_reply_to():
    """in_reply_to true (or 1.0, or "1") answers nothing, though the read's msg_id is 1; the real reply does."""
    with Net(args=[*LIN_KV, "--origin-timeout", "30"]) as net:
        def answer(msg: dict) -> bytes:
            assert msg["body"]["msg_id"] == 1
            wrong = b"".join(service_reply(msg, '"type":"read_ok","value":"wrong"').replace(b'"in_reply_to":1',
                                                                                           b'"in_reply_to":' + id_)
                             for id_ in (b"true", b"1.0", b'"1"'))
            return wrong + service_reply(msg, '"type":"read_ok","value":"right"')

        odd_service(net, answer)
        assert net.call("n1", {"type": "get", "key": "k"})["value"] == "right"


# -- 9. before init: only string srcs ------------------------------------------------------------------------


def test_before_init_a_request_whose_dest_is_not_a_string_gets_no_reply():
    """Before init the node signs its error 11 with the request's dest: only a string can sign a message;
    null, 5, an object or a dest nested 990 deep gets no reply (logged), and the node carries on."""
    with Net(init=False) as net:
        for msg_id, dest in enumerate([None, 5, {"a": 1}, [], True], start=9600):
            net.send_raw("n1", line({"type": "get", "msg_id": msg_id, "key": "k"}, dest=dest))
        net.send_raw("n1", b'{"src":"c1","dest":' + nested_json(990)
                     + b',"body":{"type":"get","msg_id":9610,"key":"k"}}\n')
        net.send_raw("n1", line({"type": "get", "msg_id": 9620, "key": "k"}, dest="n7"))
        assert net.reply(9620)["code"] == 11
        assert [m["src"] for m in net.client_messages] == ["n7"]
        assert net.call("n1", {"type": "init", "node_id": "n1", "node_ids": ["n1"]}, client="c0")["msg_id"] == 1
        started = time.monotonic()
        assert net.close() == {"n1": 0}
        assert time.monotonic() - started < 3  # no wait for replies owed to requests that get none
    assert all(isinstance(json.loads(ln)["src"], str) for ln in net.lines())
    assert_quiet_stderr(net.stderr())


# -- 10. bounded log lines -------------------------------------------------------------------------------


def test_every_log_line_is_bounded():
    """A 5 MB node_id in a second init, a 5 MB unknown type, a 5 MB reply to nothing: each logged in
    a line of bounded length, even at DEBUG."""
    big = "x" * 5_000_000
    with Net(args=[*FAST, "--log-level", "DEBUG"]) as net:
        net.send_raw("n1", line({"type": "init", "msg_id": 9700, "node_id": big, "node_ids": [big]}, src="c0"))
        net.send_raw("n1", line({"type": big, "msg_id": 9701}))
        net.send_raw("n1", line({"type": "read_ok", "in_reply_to": 12345, "value": big}, src="lin-kv"))
        net.send_raw("n1", b"not json " + big.encode() + b"\n")
        net.reply(9700, client="c0")
        net.reply(9701)
        assert net.call("n1", {"type": "get", "key": "k"})["value"] == "value-k"
        assert net.close() == {"n1": 0}
        lines = net.stderr().splitlines()
        assert lines and max(len(ln) for ln in lines) <= 2000, max(len(ln) for ln in lines)
        assert len(net.stderr()) < 100_000


# -- 11. errors in environment variables name the variable ---------------------------------------------------

ENV_ERRORS = [{"CF_TTL": "abc"}, {"CF_ORIGIN_TIMEOUT": "-1"}, {"CF_ORIGIN": "memcached"},
              {"CF_LOG_LEVEL": "loud"}, {"CF_MAX_WAITERS": "1.5"}]


@pytest.mark.parametrize("env", ENV_ERRORS, ids=[next(iter(e)) for e in ENV_ERRORS])
def test_a_bad_environment_variable_is_named_in_the_error(env):
    done = subprocess.run([sys.executable, str(MAIN)], input=json.dumps(INIT).encode() + b"\n",
                          capture_output=True, timeout=20, env=clean_env(**env))
    assert done.returncode == 2 and done.stdout == b""
    name, value = next(iter(env.items()))
    assert name in done.stderr.decode() and value in done.stderr.decode(), done.stderr
    flag = "--" + name[3:].lower().replace("_", "-")
    assert f"argument {flag}:" not in done.stderr.decode()


def test_a_bad_flag_still_names_the_flag():
    done = subprocess.run([sys.executable, str(MAIN), "--ttl", "abc"], input=b"", capture_output=True,
                          timeout=20, env=clean_env(CF_TTL="5"))
    assert done.returncode == 2 and "--ttl" in done.stderr.decode() and "CF_TTL" not in done.stderr.decode()


def test_a_huge_origin_timeout_at_end_of_input_waits_instead_of_crashing():
    """At end of input: with a fetch the service never answers and --origin-timeout 1e11, the node
    waits for it (as told) rather than dying of OverflowError on the wait."""
    with Net(args=[*LIN_KV, "--origin-timeout", "1e11"]) as net:
        net.kv.fail = "drop"
        net.send("n1", {"type": "get", "key": "k"})
        net.kv.wait_count("read", 1)
        net.nodes["n1"].inbox.put(None)  # end of input
        with pytest.raises(subprocess.TimeoutExpired):
            net.nodes["n1"].proc.wait(timeout=1.5)
        assert_quiet_stderr(net.stderr())
        net.nodes["n1"].proc.terminate()


# -- found by the fuzzer: an owner's odd answer ----------------------------------------------------------

ODD_OWNER_REPLIES = {
    "a 401-digit ttl_left": '"type":"cf_fetch_ok","value":"v","ttl_left":1' + "0" * 400,
    "no value": '"type":"cf_fetch_ok","ttl_left":1',
    "a value nested 200 deep": '"type":"cf_fetch_ok","ttl_left":1,"value":' + nested_json(200).decode(),
    "an error code true": '"type":"error","code":true,"text":"odd","ttl_left":1',
}


@pytest.mark.parametrize("case", ODD_OWNER_REPLIES)
def test_an_odd_answer_from_the_owner_makes_the_node_act_alone(case):
    """n2 (played here) owns the key and answers cf_fetch oddly: n1 fetches from its origin at once,
    well before --peer-timeout, with no traceback."""
    from collapsed_forwarding.node.forwarding import owner

    key = next(f"k{i}" for i in range(100) if owner(f"k{i}", ["n1", "n2"]) == "n2")
    with Net(init=False, args=[*FAST, "--peer-timeout", "20"]) as net:
        net.call("n1", {"type": "init", "node_id": "n1", "node_ids": ["n1", "n2"]}, client="c0")
        msg_id = net.send("n1", {"type": "get", "key": key})
        deadline = time.monotonic() + 5
        while not any(m["dest"] == "n2" for m in net.client_messages):
            assert time.monotonic() < deadline, "no cf_fetch to n2"
            time.sleep(0.01)
        ask = next(m for m in net.client_messages if m["dest"] == "n2")["body"]
        assert ask["type"] == "cf_fetch"
        net.send_raw("n1", f'{{"src":"n2","dest":"n1","body":{{"in_reply_to":{ask["msg_id"]},"msg_id":5,'
                           f'{ODD_OWNER_REPLIES[case]}}}}}\n'.encode())
        reply = net.reply(msg_id, timeout=5)
        assert (reply["type"], reply["value"]) == ("get_ok", "value-" + key), reply
        assert_quiet_stderr(net.stderr())
        assert net.call("n1", {"type": "stats"})["peer_fallbacks"] == 1


def test_input_ending_inside_an_unfinished_message_is_logged_and_the_node_exits_0():
    data = json.dumps(INIT).encode() + b'\n{\n  "src": "c1",\n'
    done = subprocess.run([sys.executable, str(MAIN)], input=data, capture_output=True, timeout=20, env=clean_env())
    assert done.returncode == 0 and done.stdout.count(b"\n") == 1
    assert "unfinished message" in done.stderr.decode()


ODD_LEASE_REPLIES = {
    "a 401-digit lease": '"type":"cf_read_ok","value":"v","lease":1' + "0" * 400,
    "a lease of true": '"type":"cf_read_ok","value":"v","lease":true',
}


@pytest.mark.parametrize("case", ODD_LEASE_REPLIES)
def test_an_odd_lease_from_the_owner_still_answers_the_read(case):
    """Found by the fuzzer in the lease code: n2 (played here) owns the key and answers cf_read with a
    lease no clock can count; n1 answers the read with the value, at once, and keeps no lease."""
    from collapsed_forwarding.node.forwarding import owner

    key = next(f"k{i}" for i in range(100) if owner(f"k{i}", ["n1", "n2"]) == "n2")
    with Net(init=False, args=[*LIN_KV, "--peer-timeout", "20"]) as net:
        net.call("n1", {"type": "init", "node_id": "n1", "node_ids": ["n1", "n2"]}, client="c0")
        msg_id = net.send("n1", {"type": "read", "key": key})
        deadline = time.monotonic() + 5
        while not any(m["dest"] == "n2" and m["body"]["type"] == "cf_read" for m in net.client_messages):
            assert time.monotonic() < deadline, "no cf_read to n2"
            time.sleep(0.01)
        ask = next(m for m in net.client_messages if m["dest"] == "n2" and m["body"]["type"] == "cf_read")["body"]
        net.send_raw("n1", f'{{"src":"n2","dest":"n1","body":{{"in_reply_to":{ask["msg_id"]},"msg_id":5,'
                           f'{ODD_LEASE_REPLIES[case]}}}}}\n'.encode())
        assert net.reply(msg_id, timeout=5) == {"type": "read_ok", "in_reply_to": msg_id, "msg_id": 2, "value": "v"}
        assert_quiet_stderr(net.stderr())
