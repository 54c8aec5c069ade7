"""multipart/form-data bodies (RFC 7578), parsed as they stream in.

Each part's data is copied once, from the chunk the server hands over into the part's own
``bytearray``; the boundary is looked for with ``bytes.find`` over whole chunks (a boundary
split between two chunks is caught by probing the join of the one's tail and the other's head).
So a 26 MB .npy part costs one copy and one scan. A part's buffer starts at its first byte, so
an .npy file's data (which ``np.save`` puts at a multiple of 64 bytes) is aligned and can be
used in place.

The grammar (RFC 2046, section 5.1.1), with what is done about each piece::

    preamble         skipped
    --BOUNDARY       the first delimiter: at the very start, or after a CRLF
    LWSP CRLF        then a part: its headers (up to a blank line), its data up to
    headers CRLF     the next CRLF--BOUNDARY
    data
    CRLF--BOUNDARY-- the close delimiter
    epilogue         skipped

A part needs ``Content-Disposition: form-data; name="..."``; it is a file part when that header
also has a ``filename`` (as browsers, curl and every HTTP client send file fields).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from ..errors import MalformedRequest

MAX_PARTS = 64
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_BOUNDARY = 70  # RFC 2046's limit on the boundary's length

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_ESCAPE = re.compile(r"\\(.)")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class Part:
    name: str
    filename: str | None  # None for a plain field
    data: bytearray = field(default_factory=bytearray)


def boundary(content_type: str) -> bytes:
    """The boundary named by a ``multipart/form-data`` Content-Type header."""
    _, params = parse_header(content_type)
    value = params.get("boundary")
    if value is None:
        raise _malformed("the Content-Type header has no boundary parameter")
    if not 0 < len(value) <= MAX_BOUNDARY or not value.isascii() or "\r" in value or "\n" in value:
        raise _malformed(f"the boundary must be 1 to {MAX_BOUNDARY} ASCII characters; got {value!r}")
    return value.encode("ascii")


def parse_header(value: str) -> tuple[str, dict[str, str]]:
    """``type; a=1; b="x y"`` -> ("type", {"a": "1", "b": "x y"}); names lower-cased, quoted
    values unescaped."""
    kind, _, rest = value.partition(";")
    params = {}
    for m in _PARAM.finditer(";" + rest):
        text = m.group(2).strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = _ESCAPE.sub(r"\1", text[1:-1])
        params[m.group(1).lower()] = text
    return kind.strip().lower(), params


async def read_parts(receive: Receive, content_type: str) -> list[Part]:
    """Every part of the body ``receive`` streams, in order."""
    parser = Parser(boundary(content_type))
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        parser.feed(message.get("body", b""))
        if not message.get("more_body", False):
            return parser.finish()


_PREAMBLE, _DELIMITER, _HEADERS, _DATA, _EPILOGUE = range(5)


class Parser:
    """Push parser: ``feed`` the body's chunks in order, then ``finish`` for the parts."""

    def __init__(self, boundary: bytes) -> None:
        self.boundary = boundary
        self.sep = b"\r\n--" + boundary  # what ends a part's data (and the preamble)
        self.state = _PREAMBLE
        self.pending = bytearray(b"\r\n")  # unread bytes outside part data; the CRLF lets the
        # first delimiter be found at the very start of the body like any other
        self.tail = b""  # the end of the data read so far that may be the start of ``sep``
        self.parts: list[Part] = []

    def feed(self, chunk: bytes | bytearray) -> None:
        data: bytes | bytearray | memoryview = chunk
        if self.state == _DATA:
            rest = self._data(chunk)
            if rest is None:
                return
            data = rest
        if self.state == _EPILOGUE:
            return
        self.pending += data
        self._structure()

    def finish(self) -> list[Part]:
        if self.state == _PREAMBLE:
            raise _malformed(f"no boundary: expected the body to start with {self._delimiter()}")
        if self.state != _EPILOGUE:
            raise _malformed(f"the body ends before the closing boundary {self._delimiter('--')}")
        return self.parts

    def _delimiter(self, end: str = "") -> str:
        return repr("--" + self.boundary.decode("ascii") + end)

    def _data(self, chunk: bytes | bytearray) -> bytes | bytearray | memoryview | None:
        """Add ``chunk`` to the current part's data; what follows the part's end, if it ends."""
        sep, data = self.sep, self.parts[-1].data
        keep = len(sep) - 1
        tail, self.tail = self.tail, b""
        if tail:
            if len(chunk) < keep:  # too short to probe with: join and look at the whole
                chunk = tail + chunk
            else:
                # A ``sep`` that starts in the tail ends within chunk[:keep]; one that does
                # not is found in the chunk below.
                i = (tail + chunk[:keep]).find(sep)
                if i >= 0:
                    data += tail[:i]
                    self.state = _DELIMITER
                    return memoryview(chunk)[i + len(sep) - len(tail) :]
                data += tail
        i = chunk.find(sep)
        if i >= 0:
            data += memoryview(chunk)[:i]
            self.state = _DELIMITER
            return memoryview(chunk)[i + len(sep) :]
        cut = max(len(chunk) - keep, 0)
        data += memoryview(chunk)[:cut]
        self.tail = bytes(chunk[cut:])
        return None

    def _structure(self) -> None:
        """Work through ``pending`` (everything outside part data) as far as it goes."""
        buf = self.pending
        while True:
            if self.state == _PREAMBLE:
                i = buf.find(self.sep)
                if i < 0:
                    del buf[: max(len(buf) - len(self.sep) + 1, 0)]
                    return
                del buf[: i + len(self.sep)]
                self.state = _DELIMITER
            elif self.state == _DELIMITER:
                if len(buf) < 2:
                    return
                if buf[:2] == b"--":
                    self.state = _EPILOGUE
                    buf.clear()
                    return
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise _malformed(f"expected a line break after the boundary {self._delimiter()}")
                    return
                if buf[:end].strip(b" \t"):
                    raise _malformed(f"expected a line break after the boundary {self._delimiter()}")
                del buf[: end + 2]
                self.state = _HEADERS
            elif self.state == _HEADERS:
                if buf[:2] == b"\r\n":
                    end, skip = 0, 2  # no headers at all
                else:
                    end, skip = buf.find(b"\r\n\r\n"), 4
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise _malformed(f"part {len(self.parts) + 1}: headers over {MAX_HEADER_BYTES} bytes")
                    return
                if len(self.parts) == MAX_PARTS:
                    raise _malformed(f"more than {MAX_PARTS} parts")
                self.parts.append(self._part(bytes(buf[:end])))
                del buf[: end + skip]
                self.state = _DATA
                held = bytes(buf)
                buf.clear()
                rest = self._data(held)
                if rest is None:
                    return
                buf += rest
            else:  # the epilogue is ignored
                buf.clear()
                return

    def _part(self, block: bytes) -> Part:
        where = f"part {len(self.parts) + 1}"
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            text = block.decode("latin-1")
        headers: dict[str, str] = {}
        for line in text.split("\r\n") if text else ():
            name, colon, value = line.partition(":")
            if not colon or not _HEADER_NAME.fullmatch(name):
                raise _malformed(f"{where}: expected a header line 'Name: value'; got {line[:80]!r}")
            headers[name.lower()] = value.strip()
        disposition = headers.get("content-disposition")
        if disposition is None:
            raise _malformed(f"{where}: missing the Content-Disposition header")
        kind, params = parse_header(disposition)
        if kind != "form-data" or "name" not in params:
            raise _malformed(f"{where}: expected 'Content-Disposition: form-data; name=...'; got {disposition[:80]!r}")
        filename = params.get("filename", params.get("filename*"))
        return Part(params["name"], filename)


def _malformed(text: str) -> MalformedRequest:
    return MalformedRequest.at(("body",), f"malformed multipart body: {text}")
