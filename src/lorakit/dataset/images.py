# Over ~400 lines because: one module per image operation kind would scatter the shared decode/resize/encode helpers.
"""One image in, one training-ready image out: the per-image worker of inspect and prepare.

Runs in worker processes, so everything here is picklable dataclasses and top-level functions;
Pillow, numpy and simplejpeg are imported inside the functions (``lorakit --help`` stays fast).

Per image: read the bytes (SHA-256 for exact duplicates), open with Pillow, collect the facts
(format, mode, bit depth, alpha, EXIF orientation, colour profile, frames, size), decide the
changes, then either copy the file byte for byte (a JPEG/PNG that needs no change) or decode,
convert to 8-bit RGB (16-bit, palette, greyscale, CMYK; a non-sRGB ICC profile converted to sRGB),
flatten transparency onto the background, apply the EXIF orientation, downscale, and encode.

Downscaling (long edge over ``max_size``):
- JPEG: decoded straight at k/8 scale by libjpeg-turbo (DCT-domain scaling), k the largest of
  1..7 that fits, so the long edge lands in (7/8·max, max]: 4000×3000 → 3000×2250 with no separate
  resize pass. With simplejpeg installed any k/8 works; with Pillow alone 1/2, 1/4, 1/8 are done in
  the decoder and other factors by a Lanczos resize to the same size.
- other formats: Lanczos (Pillow ``LANCZOS``, reducing_gap 3) to exactly ``max_size``.
Outputs: JPEG sources → JPEG q95 with the source's chroma subsampling, others → PNG (zlib level
1), unless ``fmt`` says png/jpeg for all. Broken files come back as ``ok=False`` with the reason;
only write errors (disk full, permissions) raise.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.fs import atomic_open, atomic_write

if TYPE_CHECKING:
    from PIL.Image import Image
    from PIL.ImageFile import ImageFile

PIPELINE_VERSION = 1
FORMATS = ("keep", "png", "jpeg")
ACCEPTED_AS_IS = ("JPEG", "PNG")  # formats every trainer reads; others are converted
_ORIENTATION_TEXT = {
    2: "mirror", 3: "rotate 180°", 4: "flip", 5: "transpose", 6: "rotate 90°", 7: "transverse", 8: "rotate 270°",
}  # fmt: skip


@dataclass(frozen=True)
class ImageSettings:
    max_size: int = 3072
    fmt: str = "keep"  # keep | png | jpeg
    background: tuple[int, int, int] = (255, 255, 255)
    jpeg_quality: int = 95
    png_level: int = 1
    fast_jpeg: bool = True  # use simplejpeg when importable

    def fingerprint(self) -> str:
        """Everything that changes an output file; a cached output is reused only on a match."""
        bg = "#{:02x}{:02x}{:02x}".format(*self.background)
        return f"v{PIPELINE_VERSION}:max{self.max_size}:{self.fmt}:{bg}:q{self.jpeg_quality}:png{self.png_level}"


@dataclass(frozen=True)
class ImageJob:
    index: int
    source: str  # absolute path
    out_dir: str | None  # None: analyse only (inspect), nothing written
    stem: str
    settings: ImageSettings = field(default_factory=ImageSettings)


@dataclass(frozen=True)
class SourceFacts:
    format: str
    mode: str
    width: int  # as displayed, EXIF orientation applied
    height: int
    frames: int = 1
    orientation: int = 1
    bit_depth: int = 8
    has_alpha: bool = False
    icc: str | None = None  # description of a non-sRGB colour profile
    jpeg_subsampling: int = -1  # Pillow's: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0

    @property
    def long_edge(self) -> int:
        return max(self.width, self.height)


@dataclass(frozen=True)
class ImageResult:
    index: int
    ok: bool
    sha256: str
    file_size: int
    error: str | None = None
    facts: SourceFacts | None = None
    phash: int | None = None
    output: str | None = None  # file name written in out_dir
    out_width: int = 0
    out_height: int = 0
    actions: tuple[str, ...] = ()
    copied: bool = False
    cpu_seconds: float = 0.0  # CPU time this image took in its worker


# ---------------------------------------------------------------- decisions (pure)


def jpeg_scale(width: int, height: int, max_size: int) -> int | None:
    """k of the k/8 DCT scaling that brings the long edge within ``max_size`` (None: no scaling)."""
    long = max(width, height)
    if long <= max_size:
        return None
    for k in range(7, 0, -1):
        if math.ceil(long * k / 8) <= max_size:
            return k
    return 1


def target_size(facts: SourceFacts, max_size: int) -> tuple[int, int] | None:
    """Output size (displayed orientation) when the image must be downscaled, else None."""
    w, h = facts.width, facts.height
    if max(w, h) <= max_size:
        return None
    if facts.format == "JPEG":
        k = jpeg_scale(w, h, max_size)
        assert k is not None
        tw, th = math.ceil(w * k / 8), math.ceil(h * k / 8)
        if max(tw, th) <= max_size:
            return tw, th
    s = max_size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def output_format(facts: SourceFacts, fmt: str) -> str:
    if fmt == "png":
        return "PNG"
    if fmt == "jpeg":
        return "JPEG"
    return "JPEG" if facts.format == "JPEG" else "PNG"


def planned_changes(facts: SourceFacts, settings: ImageSettings) -> list[str]:
    """What prepare will do to this image (empty: copied byte for byte)."""
    ch: list[str] = []
    if facts.format not in ACCEPTED_AS_IS:
        ch.append(f"convert {facts.format} to {output_format(facts, settings.fmt)}")
    if facts.frames > 1 and facts.format != "JPEG":
        ch.append(f"first frame of {facts.frames} (animated)")
    if facts.mode == "CMYK":
        ch.append("CMYK to RGB")
    elif facts.bit_depth > 8:
        ch.append(f"{facts.bit_depth}-bit to 8-bit RGB")
    elif facts.mode in ("P", "PA"):
        ch.append("palette to RGB")
    elif facts.mode in ("L", "LA", "La", "1", "I", "F") or facts.mode.startswith("I;"):
        ch.append("greyscale to RGB")
    elif facts.mode not in ("RGB", "RGBA", "RGBa"):
        ch.append(f"{facts.mode} to RGB")
    if facts.icc:
        ch.append(f"colour profile '{facts.icc}' to sRGB")
    if facts.has_alpha:
        ch.append("flatten transparency onto #{:02x}{:02x}{:02x}".format(*settings.background))
    if facts.orientation != 1:
        ch.append(f"EXIF orientation {facts.orientation} ({_ORIENTATION_TEXT[facts.orientation]})")
    size = target_size(facts, settings.max_size)
    if size:
        ch.append(f"downscale {facts.width}×{facts.height} to {size[0]}×{size[1]}")
    return ch


# ---------------------------------------------------------------- worker

_heif_checked = False


def _register_plugins() -> None:
    global _heif_checked
    if _heif_checked:
        return
    _heif_checked = True
    from PIL import Image

    # keep freed image memory for the next image instead of fresh pages (page faults) each time
    with contextlib.suppress(Exception):
        Image.core.set_blocks_max(12)  # type: ignore[attr-defined]
    # not installed or broken: HEIF files are then reported as unreadable, with the fix
    with contextlib.suppress(Exception):
        importlib.import_module("pillow_heif").register_heif_opener()


def _simplejpeg() -> Any | None:
    try:
        return importlib.import_module("simplejpeg")
    except ImportError:
        return None


_buffer: Any = None  # per-process decode buffer, reused: fresh 30 MB allocations cost page faults


def _fast_decode(sj: Any, data: bytes, kw: dict[str, int]) -> Image:
    """simplejpeg (libjpeg-turbo) decode into a reused RGBX buffer that Pillow wraps without a copy."""
    global _buffer
    import numpy as np
    from PIL import Image as PILImage

    h, w, _, _ = sj.decode_jpeg_header(data, min_height=kw.get("min_height", 0), min_width=kw.get("min_width", 0))
    need = w * h * 4
    if _buffer is None or _buffer.size < need:
        _buffer = np.empty(need, dtype=np.uint8)
    arr = sj.decode_jpeg(data, colorspace="RGBX", strict=True, buffer=_buffer[:need], **kw)
    h, w = arr.shape[:2]
    return PILImage.frombuffer("RGB", (w, h), arr, "raw", "RGBX", 0, 1)


def process_image(job: ImageJob) -> ImageResult:
    """Inspect (``out_dir`` None) or prepare one image. Never raises for a bad image."""
    _register_plugins()
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _process(job)
    return replace(result, cpu_seconds=time.process_time() - start)


def _broken(job: ImageJob, sha: str, size: int, why: str) -> ImageResult:
    return ImageResult(job.index, False, sha, size, error=why)


def _why_unreadable(exc: BaseException, data: bytes, path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels to open safely ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        head = data[:512]
        try:
            text = head.decode("utf-8")
            if text and all(c.isprintable() or c.isspace() for c in text):
                return f"not an image: a text file named {path.suffix or 'without extension'}"
        except UnicodeDecodeError:
            pass
        if path.suffix.lower() in (".heic", ".heif"):
            return "HEIF image: install pillow-heif to read it (pip install pillow-heif)"
        return "not an image Pillow can read"
    return f"truncated or corrupt ({type(exc).__name__}: {exc})"


def _process(job: ImageJob) -> ImageResult:
    from PIL import Image

    path = Path(job.source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _broken(job, "", 0, f"cannot read: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return _broken(job, sha, 0, "empty file (0 bytes)")
    s = job.settings
    try:
        im = Image.open(io.BytesIO(data))
        facts = _facts(im, data)
    except Exception as exc:  # Pillow raises many kinds for bad files
        return _broken(job, sha, len(data), _why_unreadable(exc, data, path))
    changes = planned_changes(facts, s)
    try:
        if job.out_dir is None or not changes:
            img, _ = _small_decode(im, data, facts, s)
            final = None
        else:
            final, actions = _convert(im, data, facts, s)
            img = final
        ph = _phash(img)
    except Exception as exc:
        return _broken(job, sha, len(data), _why_unreadable(exc, data, path))

    if job.out_dir is None:
        return ImageResult(job.index, True, sha, len(data), facts=facts, phash=ph, actions=tuple(changes))
    out_dir = Path(job.out_dir)
    if final is None:  # nothing to change: the source bytes, as they are
        name = job.stem + (".jpg" if facts.format == "JPEG" else ".png")
        atomic_write(out_dir / name, data, durable=False)
        return ImageResult(
            job.index, True, sha, len(data), facts=facts, phash=ph, output=name,
            out_width=facts.width, out_height=facts.height, actions=("copied unchanged",), copied=True,
        )  # fmt: skip
    fmt = output_format(facts, s.fmt)
    if fmt == "JPEG":
        sub = facts.jpeg_subsampling if facts.format == "JPEG" and facts.jpeg_subsampling in (0, 1, 2) else 0
        name = job.stem + ".jpg"
        with atomic_open(out_dir / name, durable=False) as f:  # straight to the file: no in-memory copy
            final.save(f, "JPEG", quality=s.jpeg_quality, subsampling=sub)
        actions.append(f"saved JPEG q{s.jpeg_quality} {('4:4:4', '4:2:2', '4:2:0')[sub]}")
    else:
        if final.mode != "RGB":
            final = final.convert("RGB")
        name = job.stem + ".png"
        with atomic_open(out_dir / name, durable=False) as f:
            final.save(f, "PNG", compress_level=s.png_level)
        actions.append("saved PNG")
    return ImageResult(
        job.index, True, sha, len(data), facts=facts, phash=ph, output=name,
        out_width=final.width, out_height=final.height, actions=tuple(actions),
    )  # fmt: skip


def _phash(img: Image) -> int:
    from lorakit.dataset.dedupe import phash

    return phash(img)


def _icc_description(icc: bytes) -> str | None:
    """Description of a non-sRGB profile; None for sRGB or an unreadable profile."""
    from PIL import ImageCms

    try:
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:
        return None
    return None if "srgb" in desc.lower().replace(" ", "") else (desc or "unnamed profile")


def _facts(im: ImageFile, data: bytes) -> SourceFacts:
    fmt = im.format or "unknown"
    if fmt == "MPO":  # camera JPEG with extra pictures (depth map, preview): a JPEG to every trainer
        fmt = "JPEG"
    frames = int(getattr(im, "n_frames", 1) or 1)
    if fmt == "JPEG":
        frames = 1
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    mode = im.mode
    depth = 8
    if mode.startswith("I;16") or mode == "I":
        depth = 16
    elif mode == "F":
        depth = 32
    elif fmt == "PNG" and data[12:16] == b"IHDR" and len(data) > 24 and data[24] == 16:
        depth = 16
    alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    icc_bytes = im.info.get("icc_profile")
    icc = _icc_description(icc_bytes) if icc_bytes else None
    sub = -1
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        sub = JpegImagePlugin.get_sampling(im)
    w, h = im.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return SourceFacts(fmt, mode, w, h, frames, orientation, depth, alpha, icc, sub)


def _to_rgb(img: Image, facts: SourceFacts, s: ImageSettings, actions: list[str], icc: bytes | None) -> Image:
    """16-bit, palette, greyscale, CMYK, alpha → 8-bit RGB (alpha flattened onto the background)."""
    from PIL import Image as PILImage

    if facts.bit_depth > 8:
        actions.append(f"{facts.bit_depth}-bit to 8-bit")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        import numpy as np

        a = np.asarray(img)
        if img.mode != "F" and (img.mode.startswith("I;16") or facts.bit_depth == 16):
            a = a.astype(np.uint32) >> 8
        img = PILImage.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if facts.has_alpha or img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema() == (255, 255):
            img = rgba.convert("RGB")
            if facts.has_alpha:
                actions.append("dropped the alpha channel (fully opaque)")
        else:
            bg = PILImage.new("RGB", rgba.size, s.background)
            bg.paste(rgba.convert("RGB"), mask=alpha)
            img = bg
            actions.append("flattened transparency onto #{:02x}{:02x}{:02x}".format(*s.background))
    if img.mode == "RGBX" and facts.icc:
        img = img.convert("RGB")
    if facts.icc and icc and img.mode in ("RGB", "CMYK"):
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if converted is not None:
                img = converted
                actions.append(f"converted colour profile '{facts.icc}' to sRGB")
        except Exception:
            actions.append(f"colour profile '{facts.icc}' unusable: ignored")
    if img.mode not in ("RGB", "RGBX"):  # RGBX: the fast JPEG decode's layout, saved as RGB
        before = img.mode
        img = img.convert("RGB")
        actions.append(f"{_MODE_NAMES.get(before, before)} to RGB")
    return img


_MODE_NAMES = {"P": "palette", "L": "greyscale", "1": "black-and-white", "CMYK": "CMYK", "YCbCr": "YCbCr"}


def _orient(img: Image, orientation: int, actions: list[str] | None) -> Image:
    from PIL import Image as PILImage

    t = PILImage.Transpose
    method = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE,
              6: t.ROTATE_270, 7: t.TRANSVERSE, 8: t.ROTATE_90}.get(orientation)  # fmt: skip
    if method is None:
        return img
    if actions is not None:
        actions.append(f"applied EXIF orientation {orientation} ({_ORIENTATION_TEXT[orientation]})")
    return img.transpose(method)


def _stored(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _small_decode(im: ImageFile, data: bytes, facts: SourceFacts, s: ImageSettings) -> tuple[Image, list[str]]:
    """Decode just enough to prove the file is whole and to hash it (JPEG at 1/8 scale)."""
    if facts.format == "JPEG":
        w, h = im.size
        im.draft("RGB" if im.mode == "RGB" else None, (max(1, w // 8), max(1, h // 8)))
    elif facts.frames > 1:
        im.seek(0)
    im.load()
    actions: list[str] = []
    img = _to_rgb(im, facts, s, actions, im.info.get("icc_profile"))
    return _orient(img, facts.orientation, None), actions


def _convert(im: ImageFile, data: bytes, facts: SourceFacts, s: ImageSettings) -> tuple[Image, list[str]]:
    from PIL import Image as PILImage

    actions: list[str] = []
    if facts.format not in ACCEPTED_AS_IS:
        actions.append(f"converted {facts.format}")
    target = target_size(facts, s.max_size)
    stored_target = _stored(target, facts.orientation) if target else None
    img: Image
    icc = im.info.get("icc_profile")
    if facts.format == "JPEG":
        sj = _simplejpeg() if s.fast_jpeg and im.mode == "RGB" else None
        if sj is not None:
            kw = {"min_width": stored_target[0], "min_height": stored_target[1]} if stored_target else {}
            img = _fast_decode(sj, data, kw)
            if target and img.size == stored_target:
                k = jpeg_scale(*im.size, s.max_size)
                actions.append(f"downscaled {facts.width}×{facts.height} to {target[0]}×{target[1]} "
                               f"(libjpeg-turbo DCT-domain scaling {k}/8)")  # fmt: skip
        else:
            original = im.size
            if stored_target:
                im.draft(None, stored_target)
            im.load()
            if target and im.size == stored_target:
                scale = round(original[0] / im.size[0])
                actions.append(f"downscaled {facts.width}×{facts.height} to {target[0]}×{target[1]} "
                               f"(libjpeg-turbo DCT-domain scaling 1/{scale})")  # fmt: skip
            img = im
    else:
        if facts.frames > 1:
            im.seek(0)
            actions.append(f"used the first frame of {facts.frames}")
        im.load()
        img = im
    img = _to_rgb(img, facts, s, actions, icc)
    img = _orient(img, facts.orientation, actions)
    if target and img.size != target:
        before = img.size
        img = img.resize(target, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
        actions.append(f"downscaled {before[0]}×{before[1]} to {target[0]}×{target[1]} (Lanczos)")
    return img, actions
