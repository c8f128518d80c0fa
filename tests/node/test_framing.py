"""The tokenizer that follows a message spread over lines (collapsed_forwarding/node/framing.py),
checked against Python's own JSON parser."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from collapsed_forwarding.node.framing import Fragment, JsonPrefix, Shape

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.text(max_size=5), JSON, max_size=5), indent=st.sampled_from([1, 2, 4, "\t", " "]),
       ascii_only=st.booleans())
def test_a_pretty_printed_message_is_reassembled_exactly(body, indent, ascii_only):
    message = {"src": "c1", "dest": "n1", "body": body}
    lines = json.dumps(message, indent=indent, ensure_ascii=ascii_only).split("\n")
    fragment = Fragment(1 << 20)
    assert fragment.begin(lines[0])
    for line in lines[1:-1]:
        assert fragment.add(line) is Shape.OPEN, line
    assert fragment.add(lines[-1]) is Shape.WHOLE
    assert json.loads(fragment.take()) == message


def _json_verdict(text: str) -> str:
    """What Python's parser says of `text`: a whole object, the beginning of one, or neither."""
    try:
        return "whole" if isinstance(json.loads(text), dict) else "broken"
    except json.JSONDecodeError as exc:
        return "open" if exc.pos >= len(text.rstrip()) and text.lstrip().startswith("{") else "broken"
    except (ValueError, RecursionError):
        return "broken"


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet='{}[]":,1-.e0tn ul\\x', max_size=30))
def test_the_tokenizer_agrees_with_pythons_parser(text):
    shape = JsonPrefix().feed(text)
    verdict = _json_verdict(text)
    if verdict == "whole":
        assert shape is Shape.WHOLE
    elif shape is Shape.WHOLE:
        raise AssertionError(f"{text!r}: whole for the tokenizer, {verdict} for json")
    if verdict == "broken" and shape is Shape.OPEN:
        # json reports some errors at the end of the text (a number or literal cut short);
        # only a prefix of a valid document may be called open
        for tail in ("}", "]}", '"}', '":1}', "1}", "]]}", "}}", "0}", "e}"):
            if _json_verdict(text + tail) != "broken":
                break
        else:
            raise AssertionError(f"{text!r}: open for the tokenizer, but nothing completes it")
