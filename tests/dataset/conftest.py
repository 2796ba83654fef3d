"""Nasty raw datasets, built on the fly: every kind of file users actually throw at prepare."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

PIL = pytest.importorskip("PIL")
np = pytest.importorskip("numpy")

from PIL import Image  # noqa: E402


def photo(seed: int, w: int, h: int) -> Image.Image:
    """Photo-like content: smooth random colour fields plus fine grain (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    base = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    a = np.asarray(base).astype(np.int16) + rng.integers(-10, 11, size=(h, w, 1), dtype=np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def png_rgb48(path: Path, w: int, h: int, seed: int) -> np.ndarray:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one); returns the 16-bit pixels."""
    rng = np.random.default_rng(seed)
    low = np.asarray(photo(seed, w, h)).astype(np.uint16)
    px = (low << 8) | rng.integers(0, 256, size=(h, w, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + px[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return px


def jpeg_bytes(im: Image.Image, **kw: object) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """rel path → SHA-256 of every file (and '<dir>' for folders) under root."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def build_nasty(root: Path) -> Path:
    """The issue's list of nasty inputs, one of each. See test_prepare.py for the expected fate."""
    root.mkdir(parents=True)
    p1 = photo(1, 640, 480)
    (root / "photo.jpg").write_bytes(jpeg_bytes(p1))
    (root / "photo.txt").write_text("a woman, smiling, a woman, ohwx", encoding="utf-8")
    (root / "z_dup.jpg").write_bytes((root / "photo.jpg").read_bytes())  # exact duplicate
    (root / "photo_small.jpg").write_bytes(jpeg_bytes(p1.resize((320, 240), Image.Resampling.LANCZOS)))

    photo(2, 500, 400).save(root / "web image.webp", "WEBP", lossless=True)
    (root / "web image.txt").write_text("outdoors, ohwx, outdoors", encoding="utf-8")

    rgba = photo(3, 400, 300).convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 200, 300))  # left half fully transparent
    rgba.putalpha(alpha)
    rgba.save(root / "rgba.png")
    (root / "rgba.txt").write_bytes(b"\xef\xbb\xbftag one,\r\ntag  two\r\n")  # BOM + CRLF

    pal = photo(4, 300, 300).quantize(64)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)

    photo(5, 480, 360).convert("CMYK").save(root / "cmyk.jpg", "JPEG", quality=92)  # no caption

    rng = np.random.default_rng(11)
    grey16 = (np.linspace(0, 65535, 320 * 240).reshape(240, 320) + rng.integers(0, 4000, (240, 320))).clip(0, 65535)
    Image.fromarray(grey16.astype(np.uint16)).save(root / "deep16.png")
    png_rgb48(root / "rgb48.png", 320, 200, 12)

    rot = photo(6, 400, 300)
    exif = Image.Exif()
    exif[0x0112] = 6
    rot.save(root / "rotated.jpg", "JPEG", quality=92, exif=exif.tobytes())

    frames = [photo(20 + i, 200, 160).quantize(32) for i in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)

    photo(7, 6000, 4000).save(root / "big.jpg", "JPEG", quality=85)
    photo(8, 200, 150).save(root / "tiny.jpg", "JPEG", quality=90)

    whole = jpeg_bytes(photo(13, 500, 400))
    (root / "truncated.jpg").write_bytes(whole[: len(whole) * 6 // 10])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not a picture\n", encoding="utf-8")

    photo(9, 420, 300).save(root / "Ünïcode façade.jpg", "JPEG", quality=90)
    (root / "sub" / "deeper").mkdir(parents=True)
    photo(10, 360, 280).save(root / "sub" / "deeper" / "nested image.png")

    (root / "orphan.txt").write_text("lonely caption", encoding="utf-8")
    (root / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "readme.md").write_text("notes", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def _nasty_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_nasty(tmp_path_factory.mktemp("template") / "raw")


@pytest.fixture
def nasty(tmp_path: Path, _nasty_template: Path) -> Path:
    """A fresh copy of the nasty folder per test (built once per session)."""
    import shutil

    return Path(shutil.copytree(_nasty_template, tmp_path / "raw"))


def build_concepts(root: Path, counts: dict[str, int], seed0: int = 100) -> Path:
    """root/<folder>/img_N.jpg with distinct content and a caption each."""
    seed = seed0
    for folder, n in counts.items():
        d = root / folder
        d.mkdir(parents=True)
        for i in range(n):
            photo(seed, 320, 240).save(d / f"img_{i:02d}.jpg", "JPEG", quality=90)
            (d / f"img_{i:02d}.txt").write_text(f"tag{i}, shared", encoding="utf-8")
            seed += 1
    return root
