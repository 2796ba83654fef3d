"""Pure pieces: captions, names, balancing, dedupe, TOML strings, scaling decisions, the worker's two
JPEG paths."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from lorakit.dataset.balance import balance_repeats, choose_schedule
from lorakit.dataset.captions import decode_caption, normalise, tag_stats
from lorakit.dataset.dedupe import find_duplicates, hamming, near_pairs, phash
from lorakit.dataset.images import ImageJob, ImageSettings, jpeg_scale, process_image
from lorakit.dataset.layout import folder_name, toml_string
from lorakit.dataset.sources import assign_stems, check_token, parse_concept_folder, safe_stem
from lorakit.errors import DatasetError
from tests.dataset.conftest import photo


def test_decode_caption_bom_utf16_cp1252() -> None:
    assert decode_caption(b"\xef\xbb\xbfa, b") == ("a, b", ["stripped UTF-8 BOM"])
    assert decode_caption("x, y".encode("utf-16")) == ("x, y", ["converted UTF-16 to UTF-8"])
    text, notes = decode_caption(b"caf\xe9")
    assert text == "café" and notes == ["not UTF-8: read as Windows-1252"]


def test_normalise_trigger_class_and_dedupe() -> None:
    c = normalise("Smiling,  red   hair , ohwx, smiling,,\n woman", "ohwx", "woman")
    assert c.tags == ("ohwx", "woman", "Smiling", "red hair")
    assert c.actions == (
        "joined 2 lines into one", "collapsed whitespace", "removed 1 repeated tag(s)", "moved trigger first",
    )  # fmt: skip
    assert normalise("ohwx woman, beach", "ohwx", "woman").tags == ("ohwx", "woman", "beach")
    assert normalise("ohwx, beach", "ohwx", None).actions == ()
    assert normalise("beach", None, None).tags == ("beach",)


def test_tag_stats() -> None:
    caps = [(f"{i}.png", normalise(f"ohwx, common, t{i}" + "".join(f", x{j}" for j in range(i * 5)), "ohwx", None))
            for i in range(6)]  # fmt: skip
    s = tag_stats(caps, {"ohwx"})
    assert s.top[0] == ("common", 6)
    assert s.on_every_image == ("common",)
    assert [i for i, _ in s.over_limit] == ["4.png", "5.png"]


def test_names() -> None:
    assert safe_stem("sub dir/Ünïcode façade (1)") == "sub_dir_Unicode_facade_1"
    assert safe_stem("写真") == "image"
    stems = assign_stems(["a.jpg", "A.png", "b.jpg", "x/b.jpg"])
    assert stems["b.jpg"] == "b" and stems["x/b.jpg"] == "x_b"
    assert stems["a.jpg"].startswith("a_") and stems["A.png"].startswith("A_")
    assert stems["a.jpg"].lower() != stems["A.png"].lower()
    assert assign_stems(["A.png", "a.jpg"]) == {"a.jpg": stems["a.jpg"], "A.png": stems["A.png"]}  # order-free


def test_tokens_and_folders() -> None:
    assert parse_concept_folder("10_alice young woman") == ("alice", "young woman", 10)
    assert parse_concept_folder("bob") == ("bob", None, None)
    assert folder_name(12, "ohwx", "woman") == "12_ohwx woman"
    with pytest.raises(DatasetError, match="has a space"):
        check_token("oh wx", "trigger", "--trigger")
    assert toml_string('C:\\data\\"x"\n\x7fé') == '"C:\\\\data\\\\\\"x\\"\\n\\u007Fé"'


def test_balance_and_schedule() -> None:
    assert balance_repeats([30, 10, 7], 10) == [10, 30, 43]
    s = choose_schedule([30, 10], repeats=10)
    assert (s.repeats, s.epochs, s.visits_per_epoch) == ((10, 30), 10, (300, 300))
    s = choose_schedule([20], visits=100, batch_size=3)
    assert (s.repeats, s.epochs, s.steps_per_epoch, s.total_steps) == ((10,), 10, 67, 670)
    assert choose_schedule([8], visits=5).repeats == (1,) and choose_schedule([8], visits=5).epochs == 5
    assert choose_schedule([8], repeats=25).epochs == 4
    with pytest.raises(DatasetError):
        choose_schedule([8], repeats=0)


def test_near_pairs_matches_brute_force() -> None:
    rng = random.Random(5)
    base = [rng.getrandbits(64) for _ in range(150)]
    hashes = base + [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in base[:40]]
    got = sorted(near_pairs(hashes, 6))
    want = sorted(
        (i, j, hamming(hashes[i], hashes[j]))
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming(hashes[i], hashes[j]) <= 6
    )
    assert got == want and len(want) >= 40
    assert near_pairs(hashes, -1) == []


def test_find_duplicates_keeps_largest() -> None:
    shas = ["a", "b", "a", "c", "d"]
    hashes = [0b1111, 0b1111, 0b1111, 0b0111, 1 << 60]
    rank = [(100, 1), (400, 1), (100, 1), (200, 1), (50, 1)]
    drops = {d.index: (d.kept, d.kind) for d in find_duplicates(shas, hashes, rank, 2)}
    # 2 is an exact copy of 0; 0, 1, 3 are near; 1 is the largest
    assert drops == {0: (1, "near"), 2: (1, "exact"), 3: (1, "near")}


def test_phash_survives_resize_and_reencode() -> None:
    from PIL import Image

    a = photo(3, 800, 600)
    b = a.resize((200, 150), Image.Resampling.BILINEAR)
    c = photo(4, 800, 600)
    assert hamming(phash(a), phash(b)) <= 4
    assert hamming(phash(a), phash(c)) > 10


def test_jpeg_scale() -> None:
    assert jpeg_scale(3000, 2000, 3072) is None
    assert jpeg_scale(4000, 3000, 3072) == 6  # → 3000
    assert jpeg_scale(3100, 100, 3072) == 7  # → 2713
    assert jpeg_scale(6000, 4000, 3072) == 4
    assert jpeg_scale(40000, 100, 3072) == 1  # still too big: Lanczos after the 1/8 decode


@pytest.mark.parametrize("fast", [True, False])
def test_both_jpeg_paths_give_the_same_size_and_close_pixels(tmp_path: Path, fast: bool) -> None:
    if fast:
        pytest.importorskip("simplejpeg")
    from PIL import Image

    photo(31, 4000, 3000).save(tmp_path / "a.jpg", "JPEG", quality=92)
    out = tmp_path / "out"
    out.mkdir()
    r = process_image(ImageJob(0, str(tmp_path / "a.jpg"), str(out), "a", ImageSettings(fast_jpeg=fast)))
    assert r.ok and r.output == "a.jpg" and (r.out_width, r.out_height) == (3000, 2250)
    with Image.open(out / "a.jpg") as im, Image.open(tmp_path / "a.jpg") as src:
        ref = src.resize((3000, 2250), Image.Resampling.LANCZOS)
        import numpy as np

        diff = np.abs(np.asarray(im, dtype=np.int16) - np.asarray(ref, dtype=np.int16)).mean()
        assert diff < 2.5


def test_inspect_mode_writes_nothing(tmp_path: Path) -> None:
    photo(1, 300, 200).save(tmp_path / "a.webp", "WEBP")
    r = process_image(ImageJob(0, str(tmp_path / "a.webp"), None, "a"))
    assert r.ok and r.output is None and r.actions == ("convert WEBP to PNG",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.webp"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    p = tmp_path / "a.jpg"
    photo(1, 50, 50).save(p)
    p.chmod(0)
    r = process_image(ImageJob(0, str(p), None, "a"))
    assert not r.ok and r.error and r.error.startswith("cannot read")


@pytest.mark.parametrize(
    ("suffix", "save_kw"),
    [(".bmp", {}), (".tif", {"compression": "tiff_lzw"}), (".avif", {"quality": 90}), (".webp", {"quality": 90})],
)
def test_other_formats_become_png(tmp_path: Path, suffix: str, save_kw: dict[str, object]) -> None:
    from PIL import features

    if suffix == ".avif" and not features.check("avif"):
        pytest.skip("Pillow built without AVIF")
    from PIL import Image

    src = tmp_path / f"a{suffix}"
    photo(2, 300, 200).save(src, **save_kw)
    out = tmp_path / "out"
    out.mkdir()
    r = process_image(ImageJob(0, str(src), str(out), "a"))
    assert r.ok and r.output == "a.png", r
    assert r.actions[0].startswith("converted ")
    with Image.open(out / "a.png") as im:
        assert (im.mode, im.size) == ("RGB", (300, 200))


def test_heif_without_plugin_names_the_fix(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pillow_heif"):
        pytest.skip("pillow-heif installed")
    p = tmp_path / "IMG_0001.HEIC"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(200))
    r = process_image(ImageJob(0, str(p), None, "a"))
    assert not r.ok and r.error == "HEIF image: install pillow-heif to read it (pip install pillow-heif)"


def test_non_srgb_profile_is_converted(tmp_path: Path) -> None:
    """A JPEG tagged with a (relabelled) non-sRGB profile goes through the LittleCMS conversion."""
    import io

    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = icc.replace("sRGB built-in".encode("utf-16-be"), "Wide built-in".encode("utf-16-be"))
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() == "Wide built-in"
    src = tmp_path / "p3.jpg"
    photo(3, 300, 200).save(src, "JPEG", quality=95, icc_profile=icc)
    out = tmp_path / "out"
    out.mkdir()
    r = process_image(ImageJob(0, str(src), str(out), "p3"))
    assert r.ok and r.facts is not None and r.facts.icc == "Wide built-in"
    assert "converted colour profile 'Wide built-in' to sRGB" in r.actions
    with Image.open(out / "p3.jpg") as im, Image.open(src) as orig:
        import numpy as np

        assert np.abs(np.asarray(im, dtype=np.int16) - np.asarray(orig, dtype=np.int16)).mean() < 2
