"""Reading payload files: bytes -> UTF-8 text -> JSON -> validated payload, every failure a clear error."""

from __future__ import annotations

import json
import os

from maml_evidence.gate.errors import PayloadValidationError, Problem, show

MAX_DEPTH = 64
MAX_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as some Windows editors write


class _Repeated(dict):
    """A decoded JSON object that named a key more than once; ``pairs`` keeps every occurrence."""

    __slots__ = ("pairs",)
    pairs: list[tuple[str, object]]


def _object(pairs: list[tuple[str, object]], found: list[_Repeated]) -> dict[str, object]:
    """``json``'s object hook: a dict, or a ``_Repeated`` one (also added to ``found``) for repeated keys."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = _Repeated(obj)
    repeated.pairs = pairs
    found.append(repeated)
    return repeated


def _repeated_keys(value: object, path: str, problems: list[Problem], depth: int = 1) -> None:
    """Every repeated key under ``value``, in document order, at its JSON path.

    Values a later duplicate replaced are searched too: a repeat inside them is reported as well.
    """
    if depth > MAX_DEPTH:
        return
    if isinstance(value, _Repeated):
        counts: dict[str, int] = {}
        for key, _child_value in value.pairs:
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            if count > 1:
                problems.append(
                    Problem(
                        _child(path, key),
                        f"duplicate key {show(key)} ({count} times in one object); each key may appear once, "
                        "as JSON readers disagree on which value counts",
                    )
                )
        for key, child in value.pairs:
            _repeated_keys(child, _child(path, key), problems, depth + 1)
    elif isinstance(value, dict):
        for key, child in value.items():
            _repeated_keys(child, _child(path, key), problems, depth + 1)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _repeated_keys(child, f"{path}[{index}]", problems, depth + 1)


def _child(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


def _fail(message: str, source: str | None, path: str = "$") -> PayloadValidationError:
    return PayloadValidationError([Problem(path, message)], source)


def _unwritable(text: str) -> bool:
    """A string holding an unpaired surrogate (from a JSON escape like \\ud800) cannot be written as UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _structure_problem(value: object) -> str | None:
    """Why a decoded document cannot be processed (too deep, unwritable text), or None."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"JSON nested too deeply; at most {MAX_DEPTH} levels are accepted"
        if isinstance(item, str):
            if _unwritable(item):
                return f"invalid text {json.dumps(item)[:60]}: unpaired UTF-16 surrogate escape"
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


def parse_payload_text(data: bytes | str, source: str | None = None) -> object:
    """Decode and parse a payload document; raises ``PayloadValidationError`` (never a traceback) on bad input."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise _fail(f"file is {len(data)} bytes; payloads larger than {MAX_BYTES} bytes are refused", source)
        skip = len(BOM) if data.startswith(BOM) else 0
        try:
            # not the "utf-8-sig" codec: looking it up imports a module, a measurable part of the gate's start-up
            data = data[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                f"not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start + skip}); "
                "save the payload as UTF-8 JSON",
                source,
            ) from None
    if not data.strip():
        raise _fail("empty document; expected a JSON object with baseline and candidate", source)
    found: list[_Repeated] = []
    try:
        value = json.loads(data, object_pairs_hook=lambda pairs: _object(pairs, found))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        if exc.pos >= len(data.rstrip()):
            raise _fail(f"invalid JSON: the document ends early at {where} (truncated?)", source) from None
        raise _fail(f"invalid JSON at {where}: {exc.msg}", source) from None
    except RecursionError:
        raise _fail(f"JSON nested too deeply; at most {MAX_DEPTH} levels are accepted", source) from None
    except ValueError:  # an integer literal beyond Python's int/str conversion limit (4300 digits)
        raise _fail("invalid JSON: a number literal has too many digits", source) from None
    problem = _structure_problem(value)
    if problem:
        raise _fail(problem, source)
    if found:  # only then is the document walked again, for the JSON paths of the repeated keys
        repeated: list[Problem] = []
        _repeated_keys(value, "$", repeated)
        raise PayloadValidationError(repeated, source)
    return value


def load_payload_file(path: str | os.PathLike[str]) -> object:
    """Read and parse a payload file; unreadable files are reported as validation errors naming the file."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail("file not found", source) from None
    except IsADirectoryError:
        raise _fail("is a directory, expected a JSON file", source) from None
    except OSError as exc:
        raise _fail(f"cannot read file: {exc.strerror or exc}", source) from None
    return parse_payload_text(data, source)
