"""Helpers for the picture tests: open a PNG for real and say whether it is a picture of the expected size."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image

from maml_evidence.gate import validate_payload
from maml_evidence.strength import evaluate_with_evidence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def open_png(data: bytes | Path) -> Image.Image:
    """The image decoded by Pillow, after checking the bytes are a PNG (not just named .png)."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    assert raw[:8] == PNG_SIGNATURE, f"not a PNG: starts {raw[:8]!r}"
    image = Image.open(io.BytesIO(raw))
    image.load()  # decodes every pixel: a truncated or corrupt file fails here
    assert image.format == "PNG"
    return image.convert("RGB")


def assert_picture(
    data: bytes | Path, size: tuple[int, int], *, min_colours: int = 16, min_ink: float = 0.03
) -> Image.Image:
    """A real PNG of ``size`` pixels, and not blank: more than ``min_colours`` colours, ink on ``min_ink`` of it."""
    image = open_png(data)
    assert image.size == size
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is not None
    assert len(colours) > min_colours, f"only {len(colours)} colours: a blank or nearly blank picture"
    ink = sum(count for count, colour in colours if min(colour) < 240)  # the palette's white may be 254
    assert ink > min_ink * size[0] * size[1], f"only {ink} inked pixels"
    return image


def has_colour(image: Image.Image, hex_colour: str, tolerance: int = 24, at_least: int = 20) -> bool:
    """Whether ``image`` has at least ``at_least`` pixels within ``tolerance`` of ``hex_colour`` (per channel)."""
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    colours = image.getcolors(maxcolors=1 << 16) or []
    near = sum(n for n, c in colours if all(abs(a - b) <= tolerance for a, b in zip(c, target, strict=True)))
    return near >= at_least


def embedded_png(markdown: str) -> bytes:
    """The PNG a Markdown metadata value embeds as a data: URI."""
    found = DATA_URI.fullmatch(markdown.strip())
    assert found, f"not a Markdown image with a data: URI: {markdown[:80]!r}"
    return base64.b64decode(found.group(1), validate=True)


def stored_report(payload: dict, **provenance: object) -> dict:
    """A report as the store writes it: the gate's report with the evidence section and a provenance stamp."""
    _, _, report, _ = evaluate_with_evidence(validate_payload(payload), {})
    report["provenance"] = {"spike_run_id": payload.get("spike_run_id", "run"), **provenance}
    return report
