"""Image tokens: each model's own rule (litellm's tables) and sizes read from file headers."""

from __future__ import annotations

import base64
import struct

import pytest

from tokenwindow.counting import count_request, counter_for_encoding
from tokenwindow.images import data_url_size, image_count_is_exact, image_size, image_tokens


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
    ("model", "size", "expected"),
    # OpenAI's published figures: gpt-4o 1024x1024 -> 765 and 2048x4096 -> 1105 (85 + 170 a
    # tile); gpt-4o-mini 2,833 + 5,667 a tile; o1 75 + 150; gpt-5 70 + 140; gpt-4.1-mini counts
    # 32px patches x 1.62 (1024x1024: 1,024 patches -> 1,659).
    [
        ("gpt-4o", (1024, 1024), 765),
        ("openai/gpt-4o", (2048, 4096), 1105),
        ("gpt-4o", (512, 512), 255),
        ("gpt-4o-mini", (1024, 1024), 2833 + 4 * 5667),
        ("azure/gpt-4o-mini", (512, 512), 2833 + 5667),
        ("o1", (1024, 1024), 75 + 4 * 150),
        ("gpt-5", (1024, 1024), 70 + 4 * 140),
        ("gpt-4.1-mini", (1024, 1024), 1659),
    ],
)
def test_each_model_counts_with_its_own_published_rule(
    model: str, size: tuple[int, int], expected: int
) -> None:
    url = data_url(png(*size))
    assert image_tokens(url, model=model) == expected
    assert image_count_is_exact(url, model=model)


def test_gpt_4o_mini_images_cost_over_30_times_gpt_4o() -> None:
    url = data_url(png(1024, 1024))
    assert image_tokens(url, model="gpt-4o-mini") > 30 * image_tokens(url, model="gpt-4o")


def test_claude_and_models_without_a_rule_are_estimates() -> None:
    url = data_url(png(1092, 1092))
    claude = image_tokens(url, model="anthropic/claude-sonnet-4-5")
    assert abs(claude - 1092 * 1092 / 750) / claude < 0.1  # Anthropic: about w * h / 750
    assert not image_count_is_exact(url, model="anthropic/claude-sonnet-4-5")
    # Not in litellm's tables: Claude's rule for a Claude model, gpt-4o's for the rest.
    assert image_tokens(url, model="anthropic/claude-3-5-sonnet-20241022") == claude
    assert image_tokens(url, model="hosted_vllm/llava") == image_tokens(url)
    assert not image_count_is_exact(url, model="hosted_vllm/llava")


def test_low_detail_is_flat() -> None:
    assert image_tokens(data_url(png(4096, 4096)), "low") == 85
    assert image_tokens(data_url(png(4096, 4096)), "low", model="gpt-4o-mini") == 2833


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


def test_an_unknown_size_counts_the_largest_image_and_is_an_estimate() -> None:
    largest = image_tokens(data_url(png(2000, 768)))
    for url in ("https://example.com/cat.jpg", "data:image/png;base64,!!!!"):
        assert image_tokens(url) == largest == 85 + 170 * 8
        assert not image_count_is_exact(url)


def test_a_count_with_an_estimated_image_is_reported_as_an_estimate() -> None:
    def request(url: str) -> list[dict[str, object]]:
        part = {"type": "image_url", "image_url": {"url": url}}
        return [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]

    known = count_request("gpt-4o-mini", messages=request(data_url(png(1024, 1024))))
    remote = count_request("gpt-4o-mini", messages=request("https://example.com/cat.png"))
    assert known["exact"] and not remote["exact"]
    text_only = counter_for_encoding("o200k_base").count_messages(
        [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]
    )
    assert known["tokens"] == text_only + 25_501
