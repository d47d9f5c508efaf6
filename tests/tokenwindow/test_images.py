"""Image tokens: OpenAI's tile rule and sizes read from file headers."""

from __future__ import annotations

import base64
import struct

import pytest

from tokenwindow.images import data_url_size, image_size, image_tokens, tile_tokens


def png(width: int, height: int, body: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * (4 + body)


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 8


def jpeg(width: int, height: int, exif: int = 0) -> bytes:
    app1 = b"\xff\xe1" + struct.pack(">H", exif + 2) + b"\0" * exif
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\0" * 9
    return b"\xff\xd8" + app1 + sof + b"\xff\xd9"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("size", "expected"),
    # OpenAI's worked examples: 1024x1024 -> 765; 2048x4096 -> 1105; small images one tile.
    [((1024, 1024), 765), ((2048, 4096), 1105), ((512, 512), 255), ((100, 4000), 85 + 170 * 4)],
)
def test_tile_rule(size: tuple[int, int], expected: int) -> None:
    assert tile_tokens(*size) == expected


def test_low_detail_is_flat() -> None:
    assert tile_tokens(4096, 8192, "low") == 85
    assert image_tokens(data_url(png(4096, 4096)), "low") == 85


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(640, 480), (640, 480)),
        (gif(33, 44), (33, 44)),
        (jpeg(1920, 1080), (1920, 1080)),
        (webp_vp8x(3000, 2000), (3000, 2000)),
        (webp_vp8l(300, 200), (300, 200)),
        (b"not an image", None),
    ],
)
def test_header_sizes(data: bytes, size: tuple[int, int] | None) -> None:
    assert image_size(data) == size


def test_jpeg_with_large_metadata_is_read_past_the_first_chunk() -> None:
    assert data_url_size(data_url(jpeg(800, 600, exif=60_000), "image/jpeg")) == (800, 600)


def test_payload_size_does_not_change_the_count() -> None:
    small = image_tokens(data_url(png(2048, 4096)))
    large = image_tokens(data_url(png(2048, 4096, body=500_000)))
    assert small == large == 1105


def test_unknown_size_assumes_1024_square_high_detail() -> None:
    assert image_tokens("https://example.com/cat.jpg") == 765
    assert image_tokens("data:image/png;base64,!!!!") == 765
