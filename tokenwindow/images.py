"""Image tokens by OpenAI's published tile rule, sized from the image header alone.

An image costs the same whatever its encoded size, so the base64 text of a ``data:`` URL is never
counted: only the width and height matter, and those sit in the first bytes of every PNG, GIF,
WebP and (after its metadata segments) JPEG file.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

LOW_DETAIL_TOKENS = 85
"""A low-detail image is one 512px tile: a flat 85 tokens."""
TILE_TOKENS = 170
"""Each 512px tile of a high-detail image."""
BASE_TOKENS = 85
"""Added once per high-detail image."""
TILE_SIZE = 512
MAX_SIDE = 2048
SHORT_SIDE = 768
UNKNOWN_SIZE = (1024, 1024)
"""Assumed when the image is a remote URL or its header cannot be read: 765 tokens at high detail.
Counting offline means never fetching the image; a 1024x1024 image is the common case."""

_HEADER_CHARS = 4096
"""Base64 characters decoded first; enough for PNG, GIF and WebP, and most JPEGs."""
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def tile_tokens(width: int, height: int, detail: str = "high") -> int:
    """Tokens for one image of ``width`` x ``height`` pixels at ``detail`` (``auto`` = high)."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    if width <= 0 or height <= 0:
        width, height = UNKNOWN_SIZE
    scale = min(1.0, MAX_SIDE / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, SHORT_SIDE / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(w / TILE_SIZE) * math.ceil(h / TILE_SIZE)
    return BASE_TOKENS + TILE_TOKENS * tiles


def _png(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 25:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Walk the segment list to the first start-of-frame marker; None if not reached yet."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # padding
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + int(length)
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, GIF, WebP or JPEG file."""
    for reader in (_png, _gif, _webp, _jpeg):
        size = reader(data)
        if size is not None:
            return size
    return None


def data_url_size(url: str) -> tuple[int, int] | None:
    """Size of a base64 ``data:`` URL image, decoding a growing prefix instead of the whole."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    chars = _HEADER_CHARS
    while True:
        prefix = payload[:chars]
        prefix = prefix[: len(prefix) - len(prefix) % 4]
        try:
            size = image_size(base64.b64decode(prefix))
        except (binascii.Error, ValueError):
            return None
        if size is not None or chars >= len(payload):
            return size
        chars *= 4


def image_tokens(url: str, detail: str = "auto") -> int:
    """Tokens for an ``image_url`` part: header size for data URLs, else ``UNKNOWN_SIZE``."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = data_url_size(url) if url.startswith("data:") else None
    width, height = size or UNKNOWN_SIZE
    return tile_tokens(width, height, detail)
