"""The prompts × strengths grid of `lorakit try` (Pillow, imported when called)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit.tryout.workflow import strength_label

if TYPE_CHECKING:
    from lorakit.tryout.workflow import Prompt

CELL = 384  # longest side of one image in the grid, px
LABEL_W = 220
HEAD_H = 28


def write_grid(
    images: Sequence[Path], prompts: Sequence[Prompt], strengths: Sequence[float], dest: Path, *, title: str = ""
) -> Path:
    """One row per prompt, one column per strength (``images`` in that order), labelled; written
    atomically to ``dest``."""
    from PIL import Image, ImageDraw, ImageFont

    from lorakit.run.folder import atomic_write_bytes

    cols = len(strengths)
    assert len(images) == len(prompts) * cols, "one image per prompt and strength"
    thumbs = []
    for p in images:
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((CELL, CELL))
            thumbs.append(im.copy())
    cw = max(t.width for t in thumbs)
    ch = max(t.height for t in thumbs)
    grid = Image.new("RGB", (LABEL_W + cols * cw, HEAD_H + len(prompts) * ch), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    draw.text((6, 8), title[:40], fill="black", font=font)
    for c, s in enumerate(strengths):
        draw.text((LABEL_W + c * cw + 6, 8), f"strength {strength_label(s)}", fill="black", font=font)
    for r, prompt in enumerate(prompts):
        y = HEAD_H + r * ch
        lines = textwrap.wrap(prompt.text, 34)[: max(1, ch // 14 - 1)]
        draw.multiline_text((6, y + 6), "\n".join(lines), fill="black", font=font, spacing=3)
        for c in range(cols):
            grid.paste(thumbs[r * cols + c], (LABEL_W + c * cw, y))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(dest, buf.getvalue())
    return dest
