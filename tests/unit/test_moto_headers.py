"""The local stack's header-block reader (infra/local/moto_http.parse_headers): whatever the
block, it gives the message http.client's own parser gives (the same fields in the same
order, the same payload, the same limits), reading plain blocks without the e-mail parser."""

from __future__ import annotations

import http.client
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.local import moto_http

ORIGINAL = moto_http._ORIGINAL["parse_headers"]

BLOCKS = [
    b"Host: 127.0.0.1:5000\r\nContent-Length: 12\r\nX-Amz-Target: DynamoDB_20120810.Query\r\n\r\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nEmpty:\r\nSpaced:   value with  spaces  \r\n\r\n",
    b"Tab:\tvalue\n\n",                             # bare newlines
    b"Folded: first\r\n  second\r\n\r\n",          # a folded line: the e-mail parser
    b"No colon here\r\nHost: x\r\n\r\n",           # not a header line: the e-mail parser
    b"Name With Space: v\r\n\r\n",
    b": empty name\r\n\r\n",
    b"Caf\xe9: cr\xe8me\r\n\r\n",                  # iso-8859-1
    b"A: b\rc\r\n\r\n",                            # a lone CR inside a value
    b"Host: x\r\n",                                # the stream ends without a blank line
    b"",
    b"\r\n",
]


def _same(block: bytes) -> None:
    want = ORIGINAL(io.BytesIO(block))
    got = moto_http.parse_headers(io.BytesIO(block))
    assert type(got) is type(want)
    assert got.items() == want.items()
    assert got.get_payload() == want.get_payload()
    assert [type(d) for d in got.defects] == [type(d) for d in want.defects]


@pytest.mark.parametrize("block", BLOCKS)
def test_a_block_reads_as_http_clients_own_parser_reads_it(block):
    _same(block)


def test_a_plain_block_never_reaches_the_e_mail_parser(monkeypatch):
    import email.parser

    def refuse(*a, **k):
        raise AssertionError("the e-mail parser was used")

    monkeypatch.setattr(email.parser.Parser, "parsestr", refuse)
    msg = moto_http.parse_headers(io.BytesIO(BLOCKS[0]))
    assert msg["content-length"] == "12" and msg.get_all("host") == ["127.0.0.1:5000"]


def test_the_limits_are_http_clients():
    with pytest.raises(http.client.LineTooLong):
        moto_http.parse_headers(io.BytesIO(b"A: " + b"x" * 70_000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException):
        moto_http.parse_headers(io.BytesIO(b"A: b\r\n" * 101 + b"\r\n"))


def test_install_replaces_http_clients_reader_and_uninstall_gives_it_back():
    was = bool(moto_http._installed)
    moto_http.install()
    assert http.client.parse_headers is moto_http.parse_headers
    if not was:
        moto_http.uninstall()
        assert http.client.parse_headers is ORIGINAL


_line = st.one_of(
    st.tuples(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=0,
                      max_size=8),
              st.sampled_from([":", ": ", ":\t", " : ", ""]),
              st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=12),
              st.sampled_from(["\r\n", "\n", "\r", " \r\n"]))
    .map(lambda t: "".join(t)),
    st.sampled_from([" folded\r\n", "\tfolded\n", "From me\r\n"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=6), st.sampled_from(["\r\n", "\n", ""]))
def test_any_block_reads_as_http_clients_own_parser_reads_it(lines, end):
    _same(("".join(lines) + end).encode("iso-8859-1"))
