"""Reading payload files: bytes -> UTF-8 text -> JSON -> validated payload, every failure a clear error."""

from __future__ import annotations

import json
import os

from maml_evidence.gate.errors import PayloadValidationError, Problem

MAX_DEPTH = 64
MAX_BYTES = 64 * 1024 * 1024


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
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _fail(
                f"not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the payload as UTF-8 JSON",
                source,
            ) from None
    if not data.strip():
        raise _fail("empty document; expected a JSON object with baseline and candidate", source)
    try:
        value = json.loads(data)
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
