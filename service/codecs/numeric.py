"""JSON bodies whose large nested arrays of numbers go straight into numpy, a piece at a time.

``orjson.loads`` turns every number of a nested array into a Python object (a float is 24 bytes,
plus 8 for its slot in a list) before numpy sees it: a 26 MB float32 tensor sent as nested JSON
cost about 200 MB of them. ``loads`` below gives the same result as

    data = orjson.loads(raw)
    # ...with each large array of numbers at a tensor position replaced by np.asarray(it)

while holding only about a megabyte of JSON text as Python objects at any time:

1. ``_spans`` walks the body (skipping strings, at C speed between quotes) and proposes each
   array of at least ``MIN_SPAN`` bytes that contains no string as a candidate.
2. ``_parse`` cuts a candidate into pieces of about ``PIECE`` bytes at its top-level commas,
   parses each piece with orjson and np.asarray, and concatenates them. Any surprise (a ragged
   array, a value that is not a number, a cut that is not at the top level, a dtype np.asarray
   would not give the whole) drops the candidate: it stays in the text, for orjson.
   Each piece is first tried by ``_fast_piece`` with simdjson (pysimdjson, about twice as fast
   as orjson and np.asarray): it gives the piece only where it is sure to be what those give,
   else they decide, just as when simdjson is not installed.
3. The body with each parsed candidate replaced by a placeholder string is parsed by orjson;
   each placeholder is then replaced by its array at a tensor position, or by orjson's own
   parse of its text anywhere else.

Whenever anything is unexpected the answer is ``orjson.loads(raw)`` itself, so the result, or
the error, is always exactly what the plain parse would give.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import orjson

try:
    import simdjson
except ImportError:  # a dependency, but the orjson path alone gives the same results
    simdjson = None  # type: ignore[assignment]

MIN_SPAN = 256 * 1024  # arrays written in fewer bytes are left to orjson
PIECE = 1 << 20  # bytes of JSON text parsed at once
MAX_STEPS = 10_000  # strings and arrays looked at before the plain parse is judged as good
MAX_DEPTH = 32  # numpy's limit is 64 dimensions; deeper candidates are left to orjson
ROW_CACHED = 1 << 14  # values of a row whose structure is cached (a few tens of KB at most, 64 rows)

_MARK = "\x00loss-service-array:"  # a JSON string no client can send: the placeholder's prefix
_MARK_JSON = b'"\\u0000loss-service-array:'
_NEXT = re.compile(rb'["\[]')
_OPENING = re.compile(rb"(?:\[[ \t\n\r]*)+")
_DTYPES = (np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.float64))  # what np.asarray gives JSON numbers
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[]{},")))  # deleted to leave a piece's structure

Path = tuple[str | int, ...]


def loads(raw: bytes | bytearray, is_tensor: Callable[[Path], bool]) -> object:
    """``orjson.loads(raw)``, with the large numeric arrays at paths where ``is_tensor`` holds
    given as numpy arrays (equal to ``np.asarray`` of the lists orjson would give)."""
    if len(raw) < MIN_SPAN:
        return orjson.loads(raw)
    parsed = [(s, e, arr) for s, e in _spans(raw) if (arr := _parse(raw, s, e)) is not None]
    if not parsed:
        return orjson.loads(raw)
    parts, at = [], 0
    for k, (s, e, _) in enumerate(parsed):
        parts += [raw[at:s], _MARK_JSON, str(k).encode(), b'"']
        at = e
    parts.append(raw[at:])
    skeleton = b"".join(parts)
    if skeleton.count(_MARK_JSON) != len(parsed):  # the client's own text looks like a placeholder
        return orjson.loads(raw)
    try:
        data = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return orjson.loads(raw)  # raises the error as the plain parse words it
    if isinstance(data, str) or not _place(data, parsed, raw, is_tensor):
        return orjson.loads(raw)  # the whole body was one array, or a placeholder became a key
    return data


def _place(data: object, parsed: list, raw: bytes | bytearray, is_tensor: Callable[[Path], bool]) -> bool:
    """Put each parsed array where its placeholder is. False if a placeholder is an object key
    (the text was not valid JSON: the plain parse must say so)."""
    stack: list[tuple[object, Path]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(key, str) and key.startswith(_MARK):
                return False
            if isinstance(value, str) and value.startswith(_MARK):
                s, e, arr = parsed[int(value[len(_MARK) :])]
                node[key] = arr if is_tensor((*path, key)) else orjson.loads(raw[s:e])  # type: ignore[index]
            elif isinstance(value, (dict, list)):
                stack.append((value, (*path, key)))
    return True


def _spans(raw: bytes | bytearray) -> list[tuple[int, int]]:
    """Candidate arrays: from a ``[`` outside any string to the last ``]`` before the next string."""
    spans: list[tuple[int, int]] = []
    pos, steps, n = 0, 0, len(raw)
    while steps < MAX_STEPS:
        steps += 1
        m = _NEXT.search(raw, pos)
        if m is None:
            break
        i = m.start()
        if raw[i] == 0x22:  # a string: skip to its closing quote
            j = i
            while steps < MAX_STEPS:
                j = raw.find(b'"', j + 1)
                if j < 0:
                    return spans
                k = j - 1
                while raw[k] == 0x5C and steps < MAX_STEPS:  # count the backslashes before it
                    k -= 1
                    steps += 1
                if (j - 1 - k) % 2 == 0:  # an even number: the quote is not escaped
                    break
            pos = j + 1
            continue
        quote = raw.find(b'"', i)
        limit = n if quote < 0 else quote
        end = raw.rfind(b"]", i, limit) + 1
        if end - i >= MIN_SPAN:
            spans.append((i, end))
        pos = limit  # no array between here and the next string can be complete and large
    return spans


@functools.cache
def _separator(depth: int) -> re.Pattern[bytes]:
    """The comma between two top-level elements of a ``depth``-deep array of numbers: it follows
    ``depth - 1`` closing brackets."""
    if depth == 1:
        return re.compile(rb",")
    return re.compile(rb"\]" + rb"[ \t\n\r]*\]" * (depth - 2) + rb"[ \t\n\r]*,")


def _parse(raw: bytes | bytearray, start: int, end: int) -> np.ndarray | None:
    """The candidate ``raw[start:end]`` as ``np.asarray`` would make it, or None."""
    opening = _OPENING.match(raw, start)
    depth = opening.group().count(b"[") if opening else 0
    if not 0 < depth <= MAX_DEPTH:
        return None
    sep = _separator(depth)
    # Top-level elements, counted where the text is compact (one allocation instead of pieces
    # and their concatenation); a count that falls short only costs that concatenation.
    rows = raw.count(b"]" * (depth - 1) + b",", start, end) + 1
    out: np.ndarray | None = None
    filled = 0
    pieces: list[np.ndarray] = []
    parser = simdjson.Parser() if simdjson is not None else None  # one per call: parsers are not thread-safe
    at, stop = start + 1, end - 1  # inside the outer brackets
    while at < stop:
        m = sep.search(raw, at + PIECE, stop) if stop - at > PIECE * 3 // 2 else None
        cut = m.end() - 1 if m else stop
        text = b"[" + raw[at:cut] + b"]"
        piece = _fast_piece(parser, text, depth) if parser is not None else None
        if piece is None:
            try:
                piece = np.asarray(orjson.loads(text))
            except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
                return None  # not an array of numbers, ragged, or cut in the wrong place
        inner = (out if out is not None else pieces[0] if pieces else piece).shape[1:]
        if piece.dtype not in _DTYPES or piece.ndim != depth or piece.shape[1:] != inner:
            return None
        if out is None and not pieces:
            out = np.empty((rows, *inner), piece.dtype)
        if out is not None and piece.dtype == out.dtype and filled + len(piece) <= len(out):
            out[filled : filled + len(piece)] = piece
            filled += len(piece)
        else:  # more rows than counted, or another dtype: keep the pieces and join them at the end
            if out is not None:
                pieces, out = [out[:filled]], None
            pieces.append(piece)
        at = cut + 1
    if out is not None:
        return out if filled == len(out) else None
    if not pieces:
        return None
    dtype = np.result_type(*{p.dtype for p in pieces})  # the promotion np.asarray applies to the whole
    return np.concatenate(pieces, dtype=dtype)


def _fast_piece(parser: simdjson.Parser, text: bytes, depth: int) -> np.ndarray | None:
    """``np.asarray(orjson.loads(text))`` by simdjson where that is sure to be the same (values,
    dtype and shape), else None: the caller then asks orjson, which also gives any error.

    simdjson, like orjson, takes only strict JSON and rounds every decimal to the nearest double;
    what it cannot give as numbers (an object, an integer beyond 64 bits, bad syntax) raises here,
    and true, false and null are not even tried. Where the two could still differ, this checks:

    * ``as_buffer`` flattens, ragged arrays included: the piece's structure (its brackets and
      commas) must be that of a rectangular array of the shape read along its first elements,
      with one number in each place. (A candidate holds no string, so no bracket or comma is
      inside one.) Empty arrays go to orjson: np.asarray makes them float64.
    * The dtype: np.asarray gives int64 when every number is written as an integer, float64 when
      any has a fraction or an exponent. Integers from 2**63 to 2**64 are uint64 for np.asarray
      and are refused as int64; beside floats, simdjson and numpy both round them to the nearest
      double. ``-0`` is the integer 0 for both, so 0.0 and not -0.0 beside floats.
    """
    if b"u" in text or b"l" in text:  # true, false or null: as_buffer would refuse them, but only after the parse
        return None
    try:
        # text is an array, so the document is one (an Array); its elements are typed as any JSON value
        doc = cast(simdjson.Array, parser.parse(text))
        shape, node = [len(doc)], cast(Any, doc)
        for _ in range(depth - 1):  # the shape, read along the first elements
            node = node[0]
            shape.append(len(node))
        floats = b"." in text or b"e" in text or b"E" in text
        values = np.frombuffer(doc.as_buffer(of_type="d" if floats else "i"), np.float64 if floats else np.int64)
    except Exception:
        return None
    # as_buffer copied the numbers out of the parser. The document and its proxies die with this
    # call, as they must: the parser refuses to parse again while any of them is alive.
    if not values.size or values.size != math.prod(shape):
        return None
    if text.translate(None, _NOT_STRUCTURE) != _structure(*shape):
        return None  # ragged, or deeper in places (as_buffer flattened it)
    return values.reshape(shape)


def _structure(rows: int, *inner: int) -> bytes:
    """The brackets and commas of a rectangular array of numbers of shape ``(rows, *inner)``,
    with no dimension 0."""
    # a small row's structure is cached; a large one (the cache is keyed by the client's shapes) is made again
    row = _row_structure(inner) if math.prod(inner) <= ROW_CACHED else _structure(*inner)
    return b"[" + (row + b",") * (rows - 1) + row + b"]"  # repeated bytes: a join of rows is slower


@functools.lru_cache(maxsize=64)
def _row_structure(shape: tuple[int, ...]) -> bytes:
    return _structure(*shape) if shape else b""
