"""Reading what a user or a stranger hands the pack (schedule files, policy metadata, request values).

Everything is checked before it is used or allocated for: sizes first, then the text encoding,
then JSON with bounded numbers (no 1e400, no NaN, no 5000-digit integers) and bounded nesting,
then each field's type and range. Every failure is a `FieldError` whose message names the source
and the field and says what is allowed, never a deep traceback. Nothing here unpickles.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Optional

MAX_INT_DIGITS = 18          # any count or size the pack reads fits in 18 digits
MAX_DEPTH = 8                # nesting of a schedule's JSON (it needs 4)


class FieldError(ValueError):
    """A value from outside that cannot be used; the message names where it came from."""


def read_json(path: str, max_bytes: int, what: str = "file") -> Any:
    """Parse a JSON file of at most `max_bytes`, refusing what JSON allows but numbers cannot be."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise FieldError(f"{path}: {size} bytes; a {what} is at most {max_bytes} bytes")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        raise FieldError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FieldError(f"{path}: not UTF-8 text (byte {err.start} is {raw[err.start:err.start + 1]!r}); "
                         f"a {what} is a JSON file") from None
    return parse_json(text, path)


def parse_json(text: str, source: str) -> Any:
    def bad_constant(name):
        raise FieldError(f"{source}: {name} is not a number a BlockDance file may hold (finite numbers only)")

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise FieldError(f"{source}: an integer of {len(digits)} digits; at most {MAX_INT_DIGITS} are allowed")
        return int(digits)

    def finite_float(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise FieldError(f"{source}: {digits[:40]} is out of the range of a float; finite numbers only")
        return value

    try:
        data = json.loads(text, parse_constant=bad_constant, parse_int=bounded_int, parse_float=finite_float)
    except RecursionError:
        raise FieldError(f"{source}: nested too deep to be a BlockDance file") from None
    except FieldError:
        raise
    except ValueError as err:
        raise FieldError(f"{source}: not valid JSON ({err})") from None
    if depth(data, MAX_DEPTH + 1) > MAX_DEPTH:
        raise FieldError(f"{source}: nested deeper than {MAX_DEPTH} levels; a BlockDance file needs fewer")
    return data


def depth(value: Any, stop: int) -> int:
    """Nesting depth of parsed JSON, counted no further than `stop`."""
    if stop <= 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((depth(v, stop - 1) for v in children), default=0)


def integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(f"{where} is {show(value)}; it must be an integer in [{low}, {high}]")
    return value


def number(value: Any, where: str, low: float, high: float, high_open: bool = False) -> float:
    """A finite number in [low, high] (or [low, high) with high_open)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise FieldError(f"{where} is {show(value)}; it must be a finite number in {bound}")
    return float(value)


def text(value: Any, where: str, max_chars: int = 200, allowed: Optional[Iterable[str]] = None) -> str:
    if not isinstance(value, str) or len(value) > max_chars or any(ord(ch) < 32 for ch in value):
        raise FieldError(f"{where} is {show(value)}; it must be text of at most {max_chars} printable characters")
    if allowed is not None:
        allowed = tuple(allowed)
        if value not in allowed:
            raise FieldError(f"{where} is {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(f"{where} is {show(value)}; it must be a JSON object")
    return value


def sequence(value: Any, where: str, min_len: int, max_len: int) -> list:
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        size = f"{len(value)} entries" if isinstance(value, list) else show(value)
        raise FieldError(f"{where} is {size}; it must be a list of {min_len} to {max_len} entries")
    return value


def flat_record(value: Any, where: str, max_keys: int = 64, max_list: int = 10000) -> dict:
    """A free-form record of scalars and lists of scalars (e.g. a schedule's calibration settings)."""
    mapping(value, where)
    if len(value) > max_keys:
        raise FieldError(f"{where} has {len(value)} keys; at most {max_keys} are allowed")
    for key, item in value.items():
        text(key, f"{where} key", 64)
        items = item if isinstance(item, list) else [item]
        if len(items) > max_list or not all(_scalar(v) for v in items):
            raise FieldError(f"{where}[{key!r}] must be a scalar (text up to 200 characters, number, true/false, "
                             f"null) or a list of at most {max_list} scalars")
    return dict(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 200)


def show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
