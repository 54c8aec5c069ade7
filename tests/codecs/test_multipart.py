"""codecs.multipart: the streaming multipart/form-data parser. Parts must come out exactly as
written, however the body is cut into chunks, and agree with Starlette's parser (python-multipart)
on bodies both accept; every malformed body gets its own clear error."""

from __future__ import annotations

import asyncio
import io
import random

import numpy as np
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from service.codecs import multipart
from service.errors import MalformedRequest

BOUNDARY = "----LossServiceBoundary7MA4YWxkTrZu0gW"


def encode(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY, preamble: bytes = b"",
           epilogue: bytes = b"", padding: bytes = b"") -> bytes:  # fmt: skip
    """A body as HTTP clients write it: (name, filename or None, data) per part."""
    out = [preamble]
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        kind = "application/octet-stream" if filename is not None else "text/plain"
        out.append(f"--{boundary}".encode() + padding + b"\r\n")
        out.append(f"Content-Disposition: {disposition}\r\nContent-Type: {kind}\r\n\r\n".encode())
        out.append(data + b"\r\n")
    out.append(f"--{boundary}--".encode() + epilogue)
    return b"".join(out)


def feed(body: bytes, sizes, boundary: str = BOUNDARY) -> list[multipart.Part]:
    """Parse ``body`` cut into chunks of the given sizes (cycled)."""
    parser = multipart.Parser(boundary.encode())
    sizes = list(sizes) if not isinstance(sizes, int) else [sizes]
    at, k = 0, 0
    while at < len(body):
        n = sizes[k % len(sizes)]
        parser.feed(body[at : at + n])
        at, k = at + n, k + 1
    return parser.finish()


def reference(body: bytes, boundary: str = BOUNDARY) -> list[tuple[str, str | None, bytes]]:
    """What Starlette's parser (python-multipart) makes of the same body."""

    async def stream():
        for i in range(0, len(body), 7919):
            yield body[i : i + 7919]

    async def parse():
        headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})
        form = await MultiPartParser(headers, stream(), max_files=1000, max_fields=1000).parse()
        out = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append((name, value.filename, await value.read()))
            else:
                out.append((name, None, value.encode()))
        await form.close()
        return out

    return asyncio.run(parse())


def as_tuples(parts: list[multipart.Part]) -> list[tuple[str, str | None, bytes]]:
    return [(p.name, p.filename, bytes(p.data)) for p in parts]


def tricky_data(rng: random.Random, n: int, text: bool) -> bytes:
    """Random bytes (ASCII for a ``text`` field) salted with pieces of the delimiter that must
    not end a part."""
    pieces = [b"\r", b"\n", b"\r\n", b"--", b"\r\n-", b"\r\n--", b"\r\n--" + BOUNDARY[:-1].encode(), BOUNDARY.encode()]
    while True:
        out = bytearray()
        while len(out) < n:
            out += rng.choice(pieces) if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 40))
        if text:
            out = out.translate(bytes(range(128)) * 2)
        if b"\r\n--" + BOUNDARY.encode() not in b"\r\n" + out:  # a part may not hold its delimiter
            return bytes(out[:n])


PARTS = [
    ("request", None, b'{"loss": "mse"}'),
    ("input", "input.npy", bytes(range(256)) * 3),
    ("empty", "empty.npy", b""),
    ("target", "t.npy", b"\r\n--" + BOUNDARY[:-2].encode() + b"\r\n\r\n-\r"),
]


@pytest.mark.parametrize(
    "size", [1, 2, 3, 5, len(BOUNDARY) + 3, len(BOUNDARY) + 4, len(BOUNDARY) + 5, 64, 1000, 1 << 20]
)
def test_parts_come_out_whole_for_any_chunking(size):
    body = encode(PARTS)
    assert as_tuples(feed(body, size)) == PARTS == reference(body)


def test_random_bodies_and_chunkings_agree_with_starlette():
    rng = random.Random(7)
    for _ in range(150):
        files = [rng.choice([None, f"f{i}.bin"]) for i in range(rng.randint(1, 5))]
        parts = [(f"p{i}", f, tricky_data(rng, rng.randint(0, 3000), text=f is None)) for i, f in enumerate(files)]
        body = encode(parts, epilogue=rng.choice([b"", b"\r\n", b"\r\nbye"]))
        sizes = [rng.randint(1, 400) for _ in range(rng.randint(1, 5))]
        assert as_tuples(feed(body, sizes)) == parts == reference(body)
        # RFC 2046 allows a preamble (python-multipart does not)
        assert as_tuples(feed(b"preamble text\r\n" + body, sizes)) == parts


def test_preamble_epilogue_and_transport_padding_are_skipped():
    body = encode(PARTS[:2], preamble=b"This is the preamble.\r\n", epilogue=b"\r\nThe epilogue.", padding=b" \t ")
    assert as_tuples(feed(body, 13)) == PARTS[:2]


def test_a_part_without_content_type_and_header_names_in_any_case():
    body = f"--{BOUNDARY}\r\ncontent-DISPOSITION: form-data; NAME=request\r\n\r\n{{}}\r\n--{BOUNDARY}--".encode()
    assert as_tuples(feed(body, 4)) == [("request", None, b"{}")]


def test_npy_data_in_a_part_is_aligned_and_writable():
    arr = np.arange(1000, dtype=np.float64)
    buf = io.BytesIO()
    np.save(buf, arr)
    for pad in range(9):  # wherever the part starts in the body
        body = encode([("x" * (1 + pad), "x.npy", buf.getvalue())])
        data = feed(body, 4096)[0].data
        view = np.frombuffer(data, np.float64, offset=128)
        assert view.flags.aligned and view.flags.writeable
        np.testing.assert_array_equal(view, arr)


@pytest.mark.parametrize(
    "value, want",
    [
        ("multipart/form-data; boundary=abc", ("multipart/form-data", {"boundary": "abc"})),
        ('Multipart/Form-Data; Boundary="a b;c"', ("multipart/form-data", {"boundary": "a b;c"})),
        ('form-data; name="in\\"put"; filename="a;b.npy"', ("form-data", {"name": 'in"put', "filename": "a;b.npy"})),
        ("form-data;name=input;filename*=UTF-8''x.npy", ("form-data", {"name": "input", "filename*": "UTF-8''x.npy"})),
        ("form-data", ("form-data", {})),
    ],
)
def test_parse_header(value, want):
    assert multipart.parse_header(value) == want


def test_filename_star_makes_a_file_part():
    disposition = "Content-Disposition: form-data; name=input; filename*=UTF-8''x.npy"
    body = f"--{BOUNDARY}\r\n{disposition}\r\n\r\nab\r\n--{BOUNDARY}--".encode()
    assert as_tuples(feed(body, 100)) == [("input", "UTF-8''x.npy", b"ab")]


def error(body: bytes, size: int = 3, boundary: str = BOUNDARY) -> str:
    with pytest.raises(MalformedRequest) as info:
        feed(body, size, boundary)
    (item,) = info.value.errors
    assert item.loc == ("body",)
    return item.msg


B = BOUNDARY
HEAD = f'--{B}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'


@pytest.mark.parametrize(
    "body, msg",
    [
        (b"", f"no boundary: expected the body to start with '--{B}'"),
        (b"garbage--", f"no boundary: expected the body to start with '--{B}'"),
        ((HEAD + "{}").encode(), f"the body ends before the closing boundary '--{B}--'"),
        ((HEAD + "{}\r\n").encode(), f"the body ends before the closing boundary '--{B}--'"),
        (f"--{B}\r\n".encode(), f"the body ends before the closing boundary '--{B}--'"),
        (f"--{B}junk\r\n\r\n".encode(), f"expected a line break after the boundary '--{B}'"),
        (
            f"--{B}\r\nnot a header\r\n\r\nx\r\n--{B}--".encode(),
            "part 1: expected a header line 'Name: value'; got 'not a header'",
        ),
        (
            f"--{B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{B}--".encode(),
            "part 1: missing the Content-Disposition header",
        ),
        (f"--{B}\r\n\r\nx\r\n--{B}--".encode(), "part 1: missing the Content-Disposition header"),
        (
            f"--{B}\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--{B}--".encode(),
            "part 1: expected 'Content-Disposition: form-data; name=...'; got 'attachment; name=x'",
        ),
        (
            f"--{B}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{B}--".encode(),
            "part 1: expected 'Content-Disposition: form-data; name=...'; got 'form-data'",
        ),
        (
            encode([("a", None, b"1")])[:-2]
            + f"\r\nContent-Disposition: form-data; name=b\r\nX: {'y' * 17000}".encode(),
            f"part 2: headers over {multipart.MAX_HEADER_BYTES} bytes",
        ),
        (
            encode([(f"p{i}", None, b"") for i in range(multipart.MAX_PARTS + 1)]),
            f"more than {multipart.MAX_PARTS} parts",
        ),
    ],
    ids=[
        "empty",
        "garbage",
        "unterminated",
        "unterminated-crlf",
        "no-parts",
        "junk-after-boundary",
        "bad-header-line",
        "no-disposition",
        "no-headers",
        "not-form-data",
        "no-name",
        "headers-too-long",
        "too-many-parts",
    ],
)
def test_malformed_bodies(body, msg):
    assert error(body) == f"malformed multipart body: {msg}"
    assert error(body, size=1 << 20) == f"malformed multipart body: {msg}"


@pytest.mark.parametrize(
    "content_type, msg",
    [
        ("multipart/form-data", "the Content-Type header has no boundary parameter"),
        ("multipart/form-data; boundary=", "the boundary must be 1 to 70 ASCII characters; got ''"),
        (
            f"multipart/form-data; boundary={'b' * 71}",
            f"the boundary must be 1 to 70 ASCII characters; got '{'b' * 71}'",
        ),
        ("multipart/form-data; boundary=é", "the boundary must be 1 to 70 ASCII characters; got 'é'"),
    ],
)
def test_bad_boundaries(content_type, msg):
    with pytest.raises(MalformedRequest) as info:
        multipart.boundary(content_type)
    assert info.value.errors[0].msg == f"malformed multipart body: {msg}"
