"""Draw the bundled example dataset `examples/comic-sample/`: 12 small comic-like panels
(flat colours, thick ink outlines, halftone dots, speech balloons) with tag captions.

Deterministic: the same files every run. Run: python scripts/make_example_dataset.py
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "examples" / "comic-sample"
TRIGGER = "lkcomic"
PALETTE = [(244, 67, 54), (255, 193, 7), (33, 150, 243), (76, 175, 80), (156, 39, 176), (255, 112, 67)]
SUBJECTS = ["robot", "cat", "city", "hero", "car", "tree"]
SIZES = [(512, 512), (512, 640), (640, 512)]


def halftone(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    for y in range(y0, y1, 12):
        for x in range(x0 + (y // 12 % 2) * 6, x1, 12):
            draw.ellipse((x, y, x + 5, y + 5), fill=colour)


def panel(i: int, rng: random.Random) -> tuple[Image.Image, str]:
    w, h = SIZES[i % len(SIZES)]
    bg, fg = rng.sample(PALETTE, 2)
    img = Image.new("RGB", (w, h), (250, 246, 235))
    d = ImageDraw.Draw(img)
    halftone(d, (0, 0, w, h // 2), tuple(min(255, c + 60) for c in bg))  # type: ignore[arg-type]
    d.rectangle((0, h // 2, w, h), fill=bg)
    subject = SUBJECTS[i % len(SUBJECTS)]
    cx, cy = w // 2 + rng.randint(-60, 60), h // 2 + rng.randint(-40, 40)
    if subject in ("robot", "car"):
        d.rectangle((cx - 90, cy - 70, cx + 90, cy + 70), fill=fg, outline="black", width=8)
        d.ellipse((cx - 50, cy - 30, cx - 10, cy + 10), fill="white", outline="black", width=5)
        d.ellipse((cx + 10, cy - 30, cx + 50, cy + 10), fill="white", outline="black", width=5)
    elif subject in ("cat", "hero"):
        d.ellipse((cx - 90, cy - 90, cx + 90, cy + 90), fill=fg, outline="black", width=8)
        d.polygon([(cx - 80, cy - 50), (cx - 40, cy - 140), (cx - 10, cy - 80)], fill=fg, outline="black")
        d.polygon([(cx + 80, cy - 50), (cx + 40, cy - 140), (cx + 10, cy - 80)], fill=fg, outline="black")
    else:
        for k in range(5):
            x = 40 + k * (w - 80) // 5
            top = cy - rng.randint(60, 180)
            d.rectangle((x, top, x + (w - 80) // 6, h - 20), fill=fg, outline="black", width=6)
    # speech balloon with "text" strokes
    bx, by = rng.randint(20, w // 3), rng.randint(20, h // 5)
    d.ellipse((bx, by, bx + 200, by + 90), fill="white", outline="black", width=5)
    d.polygon([(bx + 60, by + 85), (bx + 90, by + 85), (bx + 50, by + 130)], fill="white", outline="black")
    for line in range(3):
        d.line((bx + 35, by + 25 + line * 20, bx + 165 - line * 20, by + 25 + line * 20), fill="black", width=5)
    d.rectangle((0, 0, w - 1, h - 1), outline="black", width=12)  # panel border
    tags = [TRIGGER, subject, "speech bubble", "halftone", "thick outlines", "flat colors"]
    if subject == "city":
        tags.append("buildings")
    return img, ", ".join(tags)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    for i in range(12):
        img, caption = panel(i, rng)
        stem = f"panel_{i + 1:02d}"
        img.save(OUT / f"{stem}.png", optimize=True)
        (OUT / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    print(f"wrote 12 panels to {OUT}")


if __name__ == "__main__":
    main()
