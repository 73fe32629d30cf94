"""Reading corpus text files whatever their encoding, and repairing cp1252/UTF-8 mojibake.

Annotation files of public corpora were written on many machines: MELD's CSVs circulate both as
clean UTF-8 and with Windows-1252 bytes surfacing as C1 control characters (`\\x92` for a right
quote) or as UTF-8 read through cp1252 (`â€™`). Text features are only as good as this text, so
adapters decode and repair before anything else, and never fail on a character.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_C1 = re.compile(r"[\x80-\x9f]")
_MAX_PASSES = 3  # text mis-decoded twice over is repaired in two passes


def read_text(path: str | Path) -> str:
    """Decode a text file as UTF-8 (BOM allowed); failing that, as single-byte Windows text.

    Latin-1 never fails and maps bytes 0x80–0x9F to C1 characters, which `repair_text` then turns
    into their cp1252 meaning, so the result equals a cp1252 decode without ever raising.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def repair_text(text: object) -> str:
    """Undo cp1252 mojibake; anything that is not text (None, NaN) becomes an empty string."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    text = str(text)
    for _ in range(_MAX_PASSES):
        repaired = _NON_ASCII_RUN.sub(_repair_run, text)
        if repaired == text:
            break
        text = repaired
    return _C1.sub(_c1_to_cp1252, text)


def _repair_run(match: re.Match[str]) -> str:
    """A run of non-ASCII characters that is really UTF-8 bytes shown as cp1252 gets decoded."""
    run = match.group(0)
    raw = bytearray()
    for char in run:
        code = ord(char)
        if 0x80 <= code <= 0x9F:
            raw.append(code)  # a raw byte kept by a latin-1 decode
            continue
        try:
            raw += char.encode("cp1252")
        except UnicodeEncodeError:
            return run  # not a cp1252 rendering of bytes: genuine text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return run


def _c1_to_cp1252(match: re.Match[str]) -> str:
    """A lone C1 control character stands for the cp1252 character with that byte value."""
    try:
        return bytes([ord(match.group(0))]).decode("cp1252")
    except UnicodeDecodeError:
        return match.group(0)  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are unassigned in cp1252: keep as is
