"""Image tokens by each model's own rule, sized from the image header alone.

The rules are litellm's (``litellm_core_utils.token_counter.estimate_image_tokens``, from its
local tables, no network): OpenAI's tile costs per model (gpt-4o 85 + 170 per 512px tile,
gpt-4o-mini 2,833 + 5,667, o1/o3 75 + 150, gpt-5 70 + 140), the 32px-patch rule with its
per-model multiplier (gpt-4.1-mini 1.62, ...), and Anthropic's 28px-patch budget for Claude.
A model litellm has no rule for is estimated with Claude's rule (Claude models) or gpt-4o's.

An image costs the same whatever its encoded size, so the base64 text of a ``data:`` URL is never
counted: only width and height matter, and those sit in the first bytes of every PNG, GIF, WebP
and (after its metadata segments) JPEG file. They are read here, where even a JPEG with large
metadata is read to its frame header, and handed to litellm as a minimal PNG header. A count is
exact only for an OpenAI rule and a size read from the image; a remote URL is never fetched and
is counted at the largest size the rule allows.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
import zlib
from types import ModuleType

from tokenwindow.offline import prepare_offline_environment

DEFAULT_IMAGE_MODEL = "gpt-4o"
"""Whose rule counts images when no model is known (OpenAI's classic tile rule)."""
CLAUDE_FALLBACK_MODEL = "anthropic/claude-sonnet-4-5"
"""Whose rule estimates a Claude model that litellm's tables do not list."""
ESTIMATE_DETAILS = frozenset(("original",))
"""Detail levels litellm has no exact rule for."""

_HEADER_CHARS = 4096
"""Base64 characters decoded first; enough for PNG, GIF and WebP, and most JPEGs."""
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


@functools.cache
def _token_counter() -> ModuleType:
    """litellm's token counter module, imported only when the first image is counted."""
    prepare_offline_environment()
    from litellm.litellm_core_utils import token_counter

    return token_counter


@functools.cache
def _family(model: str) -> str | None:
    """litellm's image rule name for ``model`` (``gpt-4o-mini``, ``claude-standard``), if any."""
    family: str | None = _token_counter()._image_model_family(model)
    return family


def _png_url(width: int, height: int) -> str:
    """The smallest data URL litellm reads a size from: a PNG signature and header chunk."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()


def _size(url: str) -> tuple[int, int] | None:
    size = data_url_size(url) if url.startswith("data:") else None
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def image_tokens(url: str, detail: str = "auto", model: str = DEFAULT_IMAGE_MODEL) -> int:
    """Tokens for an ``image_url`` part sent to ``model`` (a litellm model name)."""
    size = _size(url)
    fallback = CLAUDE_FALLBACK_MODEL if "claude" in model else DEFAULT_IMAGE_MODEL
    tokens: int = _token_counter().estimate_image_tokens(
        model, _png_url(*size) if size else url, detail, fallback_model=fallback
    )
    return tokens


def image_count_is_exact(url: str, detail: str = "auto", model: str = DEFAULT_IMAGE_MODEL) -> bool:
    """True when ``image_tokens`` follows the provider's published rule for a known size."""
    family = _family(model)
    return (
        family is not None
        and not family.startswith("claude")
        and detail not in ESTIMATE_DETAILS
        and _size(url) is not None
    )
