"""Reading a bulk erasure CSV, without AWS: what a file's first bytes say about it (binary,
not UTF-8, empty, its delimiter) and how a streamed body is cut into numbered rows.

`_sniff` and `_rows` are private to `oblio.jobs.bulk`; they are tested as they are because
they hold the file-format decisions. How a row's cells become identities is decided inside
`bulk.validate`, next to its S3 reads and writes: tests/unit/test_bulk_jobs.py checks it
through `validate` with the in-process AWS."""

from __future__ import annotations

import io

import pytest

from oblio.core.errors import OblioError
from oblio.jobs import bulk


def rows(text: str | bytes, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    data = text.encode() if isinstance(text, str) else text
    return list(bulk._rows(io.BytesIO(data), delimiter))


# -- what the first bytes say ------------------------------------------------------------------

@pytest.mark.parametrize("header, delimiter", [
    (b"email,phone\n", ","), (b"email;phone\n", ";"), (b"\xef\xbb\xbfemail;phone\n", ";"),
    (b"email;phone;comment\r\nx;y;z\r\n", ";"), (b'"email";"phone"\n', ";"),
])
def test_the_delimiter_is_read_from_the_header_line(header, delimiter):
    assert bulk._sniff(header) == delimiter


@pytest.mark.parametrize("header", [b"email\n", b"email\nmario@example.com\n",
                                    b"email\tphone\n"])
def test_a_header_without_comma_or_semicolon_is_read_with_commas(header):
    assert bulk._sniff(header) == ","


def test_only_the_header_line_decides_the_delimiter():
    assert bulk._sniff(b"email,note\nm@example.com,\"a; b; c; d\"\n") == ","


@pytest.mark.parametrize("sample, says", [
    (b"", "empty"), (b"   \n\n", "empty"), (b"\xef\xbb\xbf", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"), (b"email\x00,phone\n", "binary"),
    (b"email,pr\xe9nom\nm@example.com,x\n" + b"y" * 10, "not UTF-8"),
])
def test_a_file_that_is_no_csv_of_text_is_refused_saying_why(sample, says):
    with pytest.raises(OblioError) as err:
        bulk._sniff(sample)
    assert says in err.value.message
    assert err.value.code == "invalid_file"


def test_a_bad_byte_after_the_header_is_left_to_the_line_that_holds_it():
    """Only the header must be readable at once; a later line is reported by its number."""
    assert bulk._sniff(b"email,nom\npr\xe9nom@example.com,x\n" + b"y" * 10) == ","


def test_a_line_that_is_not_utf8_is_reported_by_number_and_reading_goes_on():
    got = rows(b"email\na@example.com\npr\xe9nom@example.com\nb@example.com\n")
    assert got == [(1, ["email"]), (2, ["a@example.com"]), (3, bulk.BadLine(bulk.NOT_UTF8)),
                   (4, ["b@example.com"])]


def test_a_field_over_the_csv_limit_is_reported_by_number_and_reading_goes_on():
    big = b"x" * 200_000
    got = rows(b"email,note\na@example.com," + big + b"\nb@example.com,ok\n")
    assert got == [(1, ["email", "note"]), (2, bulk.BadLine(bulk.FIELD_TOO_LONG)),
                   (3, ["b@example.com", "ok"])]


def test_a_character_cut_at_the_end_of_the_sample_is_not_an_encoding_error():
    """The sample is the file's first 64 KiB: it may end inside a multi-byte character."""
    text = "email;name\nrene@example.com;Ren\u00e9".encode()
    assert bulk._sniff(text[:-1]) == ";"


def test_the_refusals_say_how_to_fix_the_file():
    for sample, fix in ((b"", "header row naming email, phone or external_id"),
                        (b"\x00\x01", "upload a UTF-8 text file"),
                        (b"\xff\xfee\x00m\x00a\x00i\x00l\x00" * 4, "upload a UTF-8 text file"),
                        (b"\xe9t\xe9,x\n" * 4, "save it as CSV UTF-8")):
        with pytest.raises(OblioError) as err:
            bulk._sniff(sample)
        assert fix in err.value.message, sample


# -- rows of a streamed body -------------------------------------------------------------------

def test_rows_are_numbered_by_the_line_they_start_on():
    assert rows("email,phone\na@example.com,\n,+393331234567\n") == [
        (1, ["email", "phone"]), (2, ["a@example.com", ""]), (3, ["", "+393331234567"])]


def test_a_byte_order_mark_is_not_part_of_the_first_header():
    assert rows(b"\xef\xbb\xbfemail;phone\n", ";")[0] == (1, ["email", "phone"])


def test_a_quoted_field_may_span_lines_and_the_next_row_keeps_its_line():
    got = rows('email,note\na@example.com,"two\nlines"\nb@example.com,x\n')
    assert got[1] == (3, ["a@example.com", "two\nlines"])
    assert got[2] == (4, ["b@example.com", "x"])


def test_blank_lines_and_windows_line_ends_are_rows_of_their_own():
    assert rows("email\r\n\r\na@example.com\r\n") == [(1, ["email"]), (2, []),
                                                     (3, ["a@example.com"])]
    assert rows("email\n;\n", ";") == [(1, ["email"]), (2, ["", ""])]


def test_cells_are_given_as_written_untrimmed_and_in_any_number():
    assert rows("email,phone\n  A@Example.com ,,extra,cells\n")[1] == (
        2, ["  A@Example.com ", "", "extra", "cells"])


def test_a_formula_stays_a_cell_of_text():
    assert rows("email\n=HYPERLINK(\"http://evil\")\n")[1] == (2, ['=HYPERLINK("http://evil")'])


def test_rows_are_read_as_the_body_streams():
    class Trickle(io.RawIOBase):
        """A body handing out a few bytes a read, like an S3 stream."""

        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
            n = min(len(buf), 3, len(self.data))
            buf[:n], self.data = self.data[:n], self.data[n:]
            return n

    body = "email\n" + "".join(f"p{i}@example.com\n" for i in range(50))
    got = list(bulk._rows(Trickle(body.encode()), ","))
    assert len(got) == 51 and got[-1] == (51, ["p49@example.com"])
