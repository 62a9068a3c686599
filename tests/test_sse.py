import pytest

from dashboard.core.sse import Decoder, Event, decode, encode_comment, encode_event, encode_retry

# --- encoding ---------------------------------------------------------------

ENCODE_CASES = [
    pytest.param("hello", {}, b"data: hello\n\n", id="plain"),
    pytest.param("a\nb", {}, b"data: a\ndata: b\n\n", id="lf"),
    pytest.param("a\r\nb", {}, b"data: a\ndata: b\n\n", id="crlf"),
    pytest.param("a\rb", {}, b"data: a\ndata: b\n\n", id="cr"),
    pytest.param("a\r\n\rb\n", {}, b"data: a\ndata: \ndata: b\ndata: \n\n", id="mixed"),
    pytest.param("a\n", {}, b"data: a\ndata: \n\n", id="trailing-newline"),
    pytest.param("\n", {}, b"data: \ndata: \n\n", id="only-newline"),
    pytest.param("", {}, b"data: \n\n", id="empty"),
    # Characters str.splitlines() would split on are ordinary data in SSE.
    pytest.param("a\x85b", {}, b"data: a\xc2\x85b\n\n", id="nel-not-split"),
    pytest.param("a\u2028b", {}, b"data: a\xe2\x80\xa8b\n\n", id="line-separator-not-split"),
    pytest.param("a\x0bb\x0cc\x1cd", {}, b"data: a\x0bb\x0cc\x1cd\n\n", id="vt-ff-fs-not-split"),
    pytest.param("café ☕ 😀", {}, "data: café ☕ 😀\n\n".encode(), id="non-ascii-emoji"),
    pytest.param("a\ud800b", {}, b"data: a\xef\xbf\xbdb\n\n", id="lone-surrogate"),
    pytest.param("\udc00\ud800", {}, b"data: \xef\xbf\xbd\xef\xbf\xbd\n\n", id="two-lone-surrogates"),
    pytest.param("x", {"id": "7"}, b"id: 7\ndata: x\n\n", id="id-str"),
    pytest.param("x", {"id": 42}, b"id: 42\ndata: x\n\n", id="id-int"),
    pytest.param("x", {"id": ""}, b"id: \ndata: x\n\n", id="id-empty-resets"),
    pytest.param("x", {"event": "tick"}, b"event: tick\ndata: x\n\n", id="event"),
    pytest.param("x", {"retry": 3000}, b"retry: 3000\ndata: x\n\n", id="retry"),
    pytest.param("x", {"retry": 0}, b"retry: 0\ndata: x\n\n", id="retry-zero"),
    pytest.param(
        "a\nb",
        {"retry": 5, "event": "up", "id": "9"},
        b"id: 9\nevent: up\nretry: 5\ndata: a\ndata: b\n\n",
        id="all-fields-in-order",
    ),
    pytest.param("x", {"event": "é"}, "event: é\ndata: x\n\n".encode(), id="event-non-ascii"),
]


@pytest.mark.parametrize(("data", "fields", "expected"), ENCODE_CASES)
def test_encode_event(data, fields, expected):
    assert encode_event(data, **fields) == expected


def test_encode_event_never_emits_a_bom():
    assert not encode_event("\ufeffx").startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "\n"])
@pytest.mark.parametrize("field", ["id", "event"])
def test_encode_event_rejects_line_breaks_and_nul(field, bad):
    with pytest.raises(ValueError):
        encode_event("x", **{field: bad})


@pytest.mark.parametrize("bad", [-1, True, False, 1.5, "10"])
def test_encode_event_rejects_bad_retry(bad):
    with pytest.raises(ValueError):
        encode_event("x", retry=bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b":\n\n"),
        ("keep-alive", b": keep-alive\n\n"),
        ("a\nb", b": a\n: b\n\n"),
        ("a\r\nb\rc", b": a\n: b\n: c\n\n"),
        ("a\u2028b", ": a\u2028b\n\n".encode()),
        ("\ud800", b": \xef\xbf\xbd\n\n"),
    ],
)
def test_encode_comment(text, expected):
    assert encode_comment(text) == expected


def test_encode_comment_default():
    assert encode_comment() == b":\n\n"


@pytest.mark.parametrize(("ms", "expected"), [(3000, b"retry: 3000\n\n"), (0, b"retry: 0\n\n")])
def test_encode_retry(ms, expected):
    assert encode_retry(ms) == expected


@pytest.mark.parametrize("bad", [-1, True, 2.0, "3000"])
def test_encode_retry_rejects(bad):
    with pytest.raises(ValueError):
        encode_retry(bad)


def test_encoded_comment_and_retry_are_not_events():
    decoder = Decoder()
    assert decoder.feed(encode_comment("a\nb") + encode_retry(1500)) == []
    assert decoder.retry == 1500


# --- round trip -------------------------------------------------------------


def _expected(data, fields):
    """What a client sees: newlines normalized to LF, surrogates replaced."""
    text = data.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    event_type = fields.get("event") or "message"
    return Event(event_type, text, str(fields.get("id", "")))


def _feed_in_pieces(encoded, cuts):
    decoder = Decoder()
    events = []
    start = 0
    for cut in [*cuts, len(encoded)]:
        events += decoder.feed(encoded[start:cut])
        start = cut
    return events + decoder.close()


BIG = ("x" * 999 + "\n" + "y" * 499 + "\r\n" + "z" * 299 + "\r") * 560  # ~1 MB
ROUND_TRIP_CASES = [*ENCODE_CASES, pytest.param(BIG, {"id": "big"}, None, id="1MB-mixed-newlines")]


@pytest.mark.parametrize(("data", "fields", "_encoded"), ROUND_TRIP_CASES)
def test_round_trip(data, fields, _encoded):
    encoded = encode_event(data, **fields)
    assert decode(encoded) == [_expected(data, fields)]


@pytest.mark.parametrize(("data", "fields", "_encoded"), ROUND_TRIP_CASES)
def test_round_trip_one_byte_at_a_time(data, fields, _encoded):
    encoded = encode_event(data, **fields)
    assert _feed_in_pieces(encoded, range(1, len(encoded))) == [_expected(data, fields)]


@pytest.mark.parametrize(("data", "fields", "_encoded"), ENCODE_CASES)
def test_round_trip_split_at_every_position(data, fields, _encoded):
    encoded = encode_event(data, **fields)
    for cut in range(len(encoded) + 1):
        assert _feed_in_pieces(encoded, [cut]) == [_expected(data, fields)], cut


def test_round_trip_of_several_events_keeps_last_event_id():
    stream = (
        encode_comment("hello")
        + encode_event("one", id=1)
        + encode_event("two", event="tick")
        + encode_event("three", id="")
    )
    assert decode(stream) == [
        Event("message", "one", "1"),
        Event("tick", "two", "1"),
        Event("message", "three", ""),
    ]


def test_empty_data_is_dispatched():
    # The buffer is "\n" before the trailing LF is removed, so it is not empty.
    assert decode(encode_event("")) == [Event(data="")]


# --- decoding: WHATWG "Interpreting an event stream" -----------------------

M = "message"

DECODE_CASES = [
    # Byte order mark: one, and only at the very start of the stream.
    pytest.param(b"\xef\xbb\xbfdata: a\n\n", [Event(M, "a")], id="leading-bom-stripped"),
    pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", [], id="second-bom-is-field-name"),
    pytest.param(b"data: \xef\xbb\xbfa\n\n", [Event(M, "\ufeffa")], id="bom-in-data-kept"),
    pytest.param(b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [Event(M, "a")], id="bom-later-not-stripped"),
    # Line endings.
    pytest.param(b"data: a\ndata: b\n\n", [Event(M, "a\nb")], id="lf"),
    pytest.param(b"data: a\rdata: b\r\r", [Event(M, "a\nb")], id="cr"),
    pytest.param(b"data: a\r\ndata: b\r\n\r\n", [Event(M, "a\nb")], id="crlf"),
    pytest.param(b"data: a\rdata: b\r\ndata: c\n\r\n", [Event(M, "a\nb\nc")], id="mixed"),
    pytest.param(b"data: a\n\r\n\rdata: b\r\r", [Event(M, "a"), Event(M, "b")], id="mixed-blank-lines"),
    pytest.param(b"data: a\n\rdata: b\n\n", [Event(M, "a"), Event(M, "b")], id="lf-then-cr-is-two-line-ends"),
    # Comments.
    pytest.param(b": hi\ndata: a\n: there\n\n", [Event(M, "a")], id="comments-ignored"),
    pytest.param(b":\n\n", [], id="bare-colon-comment"),
    pytest.param(b":data: a\n\n", [], id="comment-looking-like-field"),
    # Field and value splitting.
    pytest.param(b"data\n\n", [Event(M, "")], id="no-colon-empty-value"),
    pytest.param(b"data:\n\n", [Event(M, "")], id="colon-empty-value"),
    pytest.param(b"data:a\n\n", [Event(M, "a")], id="no-space"),
    pytest.param(b"data: a\n\n", [Event(M, "a")], id="one-space-removed"),
    pytest.param(b"data:  a\n\n", [Event(M, " a")], id="only-one-space-removed"),
    pytest.param(b"data:\ta\n\n", [Event(M, "\ta")], id="tab-kept"),
    pytest.param(b"data: a: b:c\n\n", [Event(M, "a: b:c")], id="split-at-first-colon"),
    pytest.param(b"Data: a\n\n", [], id="field-names-case-sensitive"),
    pytest.param(b"data : a\n\n", [], id="space-before-colon-is-part-of-name"),
    pytest.param(b"foo: bar\ndata: a\n\n", [Event(M, "a")], id="unknown-field-ignored"),
    # event.
    pytest.param(b"event: up\ndata: a\n\n", [Event("up", "a")], id="event-type"),
    pytest.param(b"event: up\nevent: down\ndata: a\n\n", [Event("down", "a")], id="last-event-field-wins"),
    pytest.param(b"event:\ndata: a\n\n", [Event(M, "a")], id="empty-event-is-message"),
    pytest.param(b"event: x\n\ndata: a\n\n", [Event(M, "a")], id="no-data-not-dispatched-and-type-does-not-leak"),
    pytest.param(b"event: up\ndata: a\n\ndata: b\n\n", [Event("up", "a"), Event(M, "b")], id="type-reset"),
    # id.
    pytest.param(b"id: 1\ndata: a\n\n", [Event(M, "a", "1")], id="id"),
    pytest.param(b"data: a\nid: 1\n\n", [Event(M, "a", "1")], id="id-after-data-applies"),
    pytest.param(b"id: 1\ndata: a\n\ndata: b\n\n", [Event(M, "a", "1"), Event(M, "b", "1")], id="id-persists"),
    pytest.param(
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [Event(M, "a", "1"), Event(M, "b", "1")],
        id="id-with-nul-ignored",
    ),
    pytest.param(
        b"id: 1\ndata: a\n\nid\ndata: b\n\n", [Event(M, "a", "1"), Event(M, "b", "")], id="id-no-colon-resets"
    ),
    pytest.param(b"id: 1\ndata: a\n\nid:\ndata: b\n\n", [Event(M, "a", "1"), Event(M, "b", "")], id="id-empty-resets"),
    pytest.param(b"id: 5\n\ndata: a\n\n", [Event(M, "a", "5")], id="id-set-by-event-without-data"),
    # Data buffer.
    pytest.param(b"data\ndata\n\n", [Event(M, "\n")], id="two-empty-data-lines"),
    pytest.param(b"data: a\n\n\n\ndata: b\n\n", [Event(M, "a"), Event(M, "b")], id="extra-blank-lines"),
    # End of stream.
    pytest.param(b"data: a\n\ndata: b\n", [Event(M, "a")], id="incomplete-event-discarded"),
    pytest.param(b"data: a\n\ndata: b", [Event(M, "a")], id="unterminated-line-discarded"),
    pytest.param(b"data: a\r", [], id="cr-at-eof-no-blank-line"),
    pytest.param(b"", [], id="empty-stream"),
    # Invalid UTF-8 is replaced, not fatal.
    pytest.param(b"data: a\xffb\n\n", [Event(M, "a\ufffdb")], id="invalid-utf8"),
    pytest.param(b"data: \xe2\x82\n\n", [Event(M, "\ufffd")], id="truncated-utf8-sequence"),
    # Examples from the spec itself.
    pytest.param(b"data: YHOO\ndata: +2\ndata: 10\n\n", [Event(M, "YHOO\n+2\n10")], id="spec-yhoo"),
    pytest.param(
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        [Event(M, "first event", "1"), Event(M, "second event", ""), Event(M, " third event", "")],
        id="spec-test-stream",
    ),
    pytest.param(b"data\n\ndata\ndata\n\ndata:", [Event(M, ""), Event(M, "\n")], id="spec-two-events"),
    pytest.param(b"data:test\n\ndata: test\n\n", [Event(M, "test"), Event(M, "test")], id="spec-identical"),
    pytest.param(b"data:test\n\ndata:  test\n\n", [Event(M, "test"), Event(M, " test")], id="two-spaces"),
    pytest.param(
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        [Event("add", "73857293"), Event("remove", "2153"), Event("add", "113411")],
        id="spec-event-types",
    ),
]


@pytest.mark.parametrize(("stream", "expected"), DECODE_CASES)
def test_decode(stream, expected):
    assert decode(stream) == expected


@pytest.mark.parametrize(("stream", "expected"), DECODE_CASES)
def test_decode_any_chunking(stream, expected):
    assert _feed_in_pieces(stream, range(1, len(stream))) == expected
    for cut in range(len(stream) + 1):
        assert _feed_in_pieces(stream, [cut]) == expected, cut


def test_cr_at_end_of_chunk_then_lf_is_one_line_end():
    decoder = Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    # Were "\r" + "\n" two line ends, this LF would be a blank line here.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [Event(M, "a\nb")]


def test_cr_then_empty_chunks_then_lf():
    decoder = Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [Event(M, "a")]


def test_utf8_sequence_and_crlf_split_across_chunks():
    decoder = Decoder()
    chunks = [b"data: \xc3", b"\xa9\r", b"\n", b"\n"]
    assert [decoder.feed(chunk) for chunk in chunks] == [[], [], [], [Event(M, "\u00e9")]]


def test_bom_split_across_chunks():
    decoder = Decoder()
    events = decoder.feed(b"\xef") + decoder.feed(b"\xbb") + decoder.feed(b"\xbfdata: a\n\n")
    assert events == [Event(M, "a")]


@pytest.mark.parametrize(
    ("stream", "retry"),
    [
        (b"retry: 1000\n", 1000),
        (b"retry:0\n", 0),
        (b"retry: 1000\nretry: 2000\n", 2000),
        (b"retry: 1000\nretry: 2s\n", 1000),
        (b"retry: -5\n", None),
        (b"retry: 1.5\n", None),
        (b"retry:  10\n", None),  # the second space is part of the value
        (b"retry: 10 \n", None),
        (b"retry:\n", None),
        (b"retry\n", None),
        ("retry: ١٢\n".encode(), None),  # Arabic-Indic digits are not ASCII digits
        ("retry: ²\n".encode(), None),
    ],
)
def test_retry(stream, retry):
    decoder = Decoder()
    assert decoder.feed(stream) == []
    assert decoder.retry == retry


def test_retry_does_not_dispatch_or_affect_events():
    decoder = Decoder()
    assert decoder.feed(b"retry: 10\n\ndata: a\nretry: 20\n\n") == [Event(M, "a")]
    assert decoder.retry == 20


def test_last_event_id_attribute_tracks_the_buffer():
    decoder = Decoder()
    assert decoder.last_event_id == ""
    decoder.feed(b"id: 1\ndata: a\n\n")
    assert decoder.last_event_id == "1"
    decoder.feed(b"data: b\n\nid: 2\x00\n")
    assert decoder.last_event_id == "1"
    decoder.feed(b"id: 3\n")  # set even before the event is complete
    assert decoder.last_event_id == "3"


def test_close_discards_incomplete_event():
    decoder = Decoder()
    assert decoder.feed(b"event: up\ndata: a\ndata: b") == []
    assert decoder.close() == []


def test_event_defaults():
    assert Event() == Event("message", "", "")
