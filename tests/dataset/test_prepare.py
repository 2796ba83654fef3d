"""prepare on the nasty folder: the exact fate of every file, the outputs, captions, TOML, manifest,
re-runs, interruption, and that the source tree is byte-for-byte untouched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from lorakit.dataset import prepare as prepare_mod
from lorakit.dataset.prepare import PrepareOptions, PrepareReport, prepare_dataset
from lorakit.errors import DatasetError
from tests.dataset.conftest import build_concepts, photo, snapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

FOLDER = "10_ohwx woman"

# source → (status, output file or reason fragment)
EXPECTED = {
    "anim.gif": ("kept", "anim.png"),
    "big.jpg": ("kept", "big.jpg"),
    "cmyk.jpg": ("kept", "cmyk.jpg"),
    "deep16.png": ("kept", "deep16.png"),
    "empty.png": ("broken", "empty file (0 bytes)"),
    "notes.png": ("broken", "not an image: a text file named .png"),
    "palette.png": ("kept", "palette.png"),
    "photo.jpg": ("kept", "photo.jpg"),
    "photo_small.jpg": ("dropped", "near-duplicate of photo.jpg"),
    "rgb48.png": ("kept", "rgb48.png"),
    "rgba.png": ("kept", "rgba.png"),
    "rotated.jpg": ("kept", "rotated.jpg"),
    "tiny.jpg": ("kept", "tiny.jpg"),
    "truncated.jpg": ("broken", "truncated or corrupt"),
    "web image.webp": ("kept", "web_image.png"),
    "z_dup.jpg": ("dropped", "exact duplicate of photo.jpg (same bytes)"),
    "Ünïcode façade.jpg": ("kept", "Unicode_facade.jpg"),
    "sub/deeper/nested image.png": ("kept", "sub_deeper_nested_image.png"),
}


def run(src: Path, **kw: object) -> PrepareReport:
    opts: dict[str, object] = {"trigger": "ohwx", "class_word": "woman", "resolution": 256, "jobs": 2}
    opts.update(kw)
    return prepare_dataset(PrepareOptions(src, **opts))  # type: ignore[arg-type]


@pytest.fixture
def prepared(nasty: Path) -> tuple[Path, dict[str, str], PrepareReport]:
    before = snapshot(nasty)
    report = run(nasty)
    return nasty, before, report


def test_every_file_has_its_exact_fate(prepared: tuple[Path, dict[str, str], PrepareReport]) -> None:
    src, before, report = prepared
    got = {r.source: r for r in report.records}
    assert set(got) == set(EXPECTED)
    for name, (status, what) in EXPECTED.items():
        rec = got[name]
        assert rec.status == status, (name, rec)
        if status == "kept":
            assert rec.output == f"{FOLDER}/{what}", name
            assert rec.reason is None
        else:
            assert rec.output is None
            assert rec.reason is not None and what in rec.reason, (name, rec.reason)
    assert report.orphan_captions == ["orphan.txt"]
    assert dict(report.ignored) == {".DS_Store": "hidden file", "readme.md": "not an image (.md)"}
    assert snapshot(src) == before  # the source tree is untouched, byte for byte


def test_output_folder_holds_exactly_the_kept_images_and_captions(
    prepared: tuple[Path, dict[str, str], PrepareReport],
) -> None:
    src, _, report = prepared
    out = src.parent / "raw-prepared"
    assert report.out == out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    kept = sorted(f"{FOLDER}/{w}" for s, w in EXPECTED.values() if s == "kept")
    captions = [f"{FOLDER}/photo.txt", f"{FOLDER}/rgba.txt", f"{FOLDER}/web_image.txt"]
    assert files == sorted([*kept, *captions, "dataset.toml", "manifest.json"])
    # no staging or temporary leftovers next to OUT or inside it
    assert sorted(p.name for p in src.parent.iterdir()) == ["raw", "raw-prepared"]


def test_images_are_8bit_rgb_fixed_as_promised(prepared: tuple[Path, dict[str, str], PrepareReport]) -> None:
    src, _, report = prepared
    d = report.out / FOLDER
    for p in d.iterdir():
        if p.suffix in (".jpg", ".png"):
            with Image.open(p) as im:
                assert im.mode == "RGB", p.name
    # unchanged JPEG/PNG: byte-for-byte copies
    for name, out in (("photo.jpg", "photo.jpg"), ("tiny.jpg", "tiny.jpg"), ("Ünïcode façade.jpg", "Unicode_facade.jpg"),
                      ("sub/deeper/nested image.png", "sub_deeper_nested_image.png")):  # fmt: skip
        assert (d / out).read_bytes() == (src / name).read_bytes()
    copied = {r.source for r in report.of("kept") if r.copied}
    assert copied == {"photo.jpg", "tiny.jpg", "Ünïcode façade.jpg", "sub/deeper/nested image.png"}

    with Image.open(d / "big.jpg") as im:  # 6000×4000 → largest k/8 within 3072: 4/8
        assert im.size == (3000, 2000)
    with Image.open(d / "rotated.jpg") as im, Image.open(src / "rotated.jpg") as orig:
        assert im.size == (300, 400)  # EXIF 6 applied: portrait
        want = orig.transpose(Image.Transpose.ROTATE_270).convert("RGB")
        assert _mean_abs_diff(im, want) < 3
    with Image.open(d / "rgba.png") as im:  # left half was transparent → white
        assert im.getpixel((10, 150)) == (255, 255, 255)
        assert im.getpixel((300, 150)) != (255, 255, 255)
    with Image.open(d / "palette.png") as im, Image.open(src / "palette.png") as orig:
        import numpy as np

        ys, xs = np.nonzero(np.asarray(orig) == 0)  # a pixel of the transparent index
        xy = (int(xs[0]), int(ys[0]))
        assert im.getpixel(xy) == (255, 255, 255)
    with Image.open(d / "deep16.png") as im, Image.open(src / "deep16.png") as orig:
        import numpy as np

        a16 = np.asarray(orig).astype(np.uint32)
        a8 = np.asarray(im)
        assert (a8[..., 0] == (a16 >> 8)).all() and (a8[..., 0] == a8[..., 2]).all()
    with Image.open(d / "rgb48.png") as im:
        assert im.size == (320, 200)
    with Image.open(d / "anim.png") as im, Image.open(src / "anim.gif") as orig:
        orig.seek(0)
        assert _mean_abs_diff(im, orig.convert("RGB")) == 0
    with Image.open(d / "cmyk.jpg") as im:
        assert im.size == (480, 360)
    rec = {r.source: r for r in report.records}
    assert rec["deep16.png"].actions == ["16-bit to 8-bit", "greyscale to RGB", "saved PNG"]
    assert rec["cmyk.jpg"].actions == ["CMYK to RGB", "saved JPEG q95 4:4:4"]
    assert rec["anim.gif"].actions[:2] == ["converted GIF", "used the first frame of 3"]
    assert rec["web image.webp"].actions == ["converted WEBP", "saved PNG"]
    assert rec["big.jpg"].actions[0].startswith("downscaled 6000×4000 to 3000×2000")


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_captions_normalised_trigger_first(prepared: tuple[Path, dict[str, str], PrepareReport]) -> None:
    _, _, report = prepared
    d = report.out / FOLDER
    assert (d / "photo.txt").read_text(encoding="utf-8") == "ohwx, woman, a woman, smiling\n"
    assert (d / "rgba.txt").read_bytes() == b"ohwx, woman, tag one, tag two\n"  # BOM and CRLF gone
    assert (d / "web_image.txt").read_text(encoding="utf-8") == "ohwx, woman, outdoors\n"
    rec = {r.source: r for r in report.records}
    assert {"stripped UTF-8 BOM", "CRLF line ends → LF", "collapsed whitespace"} <= set(rec["rgba.png"].caption_actions)
    assert rec["web image.webp"].caption_actions == ["removed 1 repeated tag(s)", "moved trigger first", "added class"]
    missing = sorted(r.source for r in report.missing_captions)
    assert missing == sorted(
        ["anim.gif", "big.jpg", "cmyk.jpg", "deep16.png", "palette.png", "rgb48.png", "rotated.jpg", "tiny.jpg",
         "Ünïcode façade.jpg", "sub/deeper/nested image.png"]
    )  # fmt: skip
    assert sorted(r.source for r in report.small) == ["anim.gif", "tiny.jpg"]  # long edge < 256


def test_dataset_toml_and_manifest(prepared: tuple[Path, dict[str, str], PrepareReport]) -> None:
    _, _, report = prepared
    toml = tomllib.loads((report.out / "dataset.toml").read_text(encoding="utf-8"))
    assert toml["general"] == {"caption_extension": ".txt"}
    ds = toml["datasets"][0]
    assert ds["resolution"] == 256 and ds["batch_size"] == 1
    (sub,) = ds["subsets"]
    assert sub == {
        "image_dir": str(report.out / FOLDER),
        "num_repeats": 10,
        "class_tokens": "ohwx woman",
        "keep_tokens": 2,
    }
    m = json.loads((report.out / "manifest.json").read_text(encoding="utf-8"))
    assert m["tool"] == "lorakit dataset prepare"
    assert m["summary"] == {
        "images_found": 18, "kept": 13, "copied_unchanged": 4, "dropped": 2, "broken": 3, "small": 2,
        "missing_captions": 10, "orphan_captions": 1,
    }  # fmt: skip
    assert m["schedule"]["total_steps"] == 13 * 10 * 10
    by_src = {i["source"]: i for i in m["images"]}
    assert by_src["rotated.jpg"]["actions"] == ["applied EXIF orientation 6 (rotate 90°)", "saved JPEG q95 4:2:0"]
    assert by_src["rgba.png"]["caption"] == f"{FOLDER}/rgba.txt"
    assert by_src["rgba.png"]["caption_source"] == "rgba.txt"


def test_rerun_reuses_everything_and_gives_the_same_bytes(nasty: Path) -> None:
    first = run(nasty)
    tree = snapshot(first.out)
    again = run(nasty)
    assert again.processed == 0 and again.reused == 18
    assert snapshot(again.out) == tree

    # one changed source: only it is processed again
    photo(77, 400, 300).save(nasty / "tiny.jpg", "JPEG", quality=90)
    third = run(nasty)
    assert third.processed == 1
    assert {r.source for r in third.records if r.status == "kept"} == {r.source for r in first.of("kept")}


def test_changed_settings_reprocess(nasty: Path) -> None:
    run(nasty)
    again = run(nasty, max_size=400)
    assert again.reused == 0
    with Image.open(again.out / FOLDER / "big.jpg") as im:
        assert max(im.size) <= 400


def test_min_size_drops_and_caption_missing_trigger(nasty: Path) -> None:
    report = run(nasty, min_size=256, caption_missing="trigger", class_word=None)
    rec = {r.source: r for r in report.records}
    assert rec["tiny.jpg"].status == "dropped"
    assert rec["tiny.jpg"].reason == "smaller than --min-size 256 (long edge 200 px)"
    assert rec["anim.gif"].status == "dropped"
    d = report.out / "10_ohwx"
    assert (d / "cmyk.txt").read_text(encoding="utf-8") == "ohwx\n"
    assert (d / "photo.txt").read_text(encoding="utf-8") == "ohwx, a woman, smiling\n"


def test_format_png_and_background(nasty: Path) -> None:
    report = run(nasty, fmt="png", background="black")
    d = report.out / FOLDER
    assert (d / "big.png").is_file() and not (d / "big.jpg").exists()
    assert (d / "photo.jpg").is_file()  # unchanged files are copied, whatever --format says
    with Image.open(d / "rgba.png") as im:
        assert im.getpixel((10, 150)) == (0, 0, 0)


def test_interrupted_run_leaves_previous_output_intact(nasty: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(nasty)
    tree = snapshot(first.out)

    def boom(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "choose_schedule", boom)
    with pytest.raises(KeyboardInterrupt):
        run(nasty, max_size=500)
    assert snapshot(first.out) == tree
    assert sorted(p.name for p in nasty.parent.iterdir()) == ["raw", "raw-prepared"]


def test_multi_concept_balanced(tmp_path: Path) -> None:
    src = build_concepts(tmp_path / "chars", {"alice woman": 6, "10_bob man": 3, "carol": 4})
    before = snapshot(src)
    report = prepare_dataset(PrepareOptions(src, repeats=10, class_word="person", jobs=2))
    rows = [(c.folder, c.images, c.repeats, c.visits_per_epoch) for c in report.concepts]
    assert rows == [("20_bob man", 3, 20, 60), ("10_alice woman", 6, 10, 60), ("15_carol person", 4, 15, 60)]
    assert (report.out / "20_bob man" / "img_00.txt").read_text(encoding="utf-8") == "bob, man, tag0, shared\n"
    toml = tomllib.loads((report.out / "dataset.toml").read_text(encoding="utf-8"))
    assert [(s["num_repeats"], s["class_tokens"]) for s in toml["datasets"][0]["subsets"]] == [
        (20, "bob man"), (10, "alice woman"), (15, "carol person"),
    ]  # fmt: skip
    assert report.schedule.total_steps == 180 * report.schedule.epochs
    assert report.tags.on_every_image == ("shared",)
    assert snapshot(src) == before


def test_visits_pick_repeats_and_epochs(tmp_path: Path) -> None:
    src = build_concepts(tmp_path / "one", {"imgs": 5})
    report = prepare_dataset(PrepareOptions(src / "imgs", trigger="sks", visits=150, batch_size=2, jobs=1))
    s = report.schedule
    assert (s.repeats, s.epochs, s.steps_per_epoch, s.total_steps) == ((15,), 10, 38, 380)
    assert report.concepts[0].folder == "15_sks"


def test_prepared_folder_matches_the_core_plan(tmp_path: Path) -> None:
    """The core's DatasetPlan reads the prepared folder with the same concepts and steps."""
    from lorakit.config.schema import DatasetSection
    from lorakit.dataset.plan import scan_dataset

    src = build_concepts(tmp_path / "chars", {"alice woman": 6, "bob": 3})
    report = prepare_dataset(PrepareOptions(src, visits=120, jobs=2))
    plan = scan_dataset(DatasetSection(), report.out)
    assert plan.layout == "kohya"
    got = sorted((c.folder.name, c.images, c.repeats, c.class_tokens) for c in plan.concepts)
    want = sorted((c.folder, c.images, c.repeats, f"{c.trigger} {c.class_word or ''}".strip()) for c in report.concepts)
    assert got == want
    s = report.schedule
    assert plan.steps(s.batch_size, s.epochs, None).total_steps == s.total_steps
    assert all(c.captioned == c.images for c in plan.concepts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trigger": "oh wx"}, "has a space"),
        ({"trigger": "a,b"}, "comma"),
        ({"repeats": 3, "visits": 50}, "--repeats and --visits both given"),
        ({"fmt": "gif"}, "--format 'gif'"),
        ({"caption_missing": "drop"}, "--caption-missing 'drop'"),
        ({"background": "notacolour"}, "is not a colour"),
        ({"min_size": 4000}, "over --max-size"),
    ],
)
def test_bad_options_are_dataset_errors(nasty: Path, kwargs: dict[str, object], message: str) -> None:
    opts: dict[str, object] = {"trigger": "ohwx"}
    opts.update(kwargs)
    with pytest.raises(DatasetError) as e:
        prepare_dataset(PrepareOptions(nasty, **opts))  # type: ignore[arg-type]
    assert message in e.value.message


def test_out_inside_source_or_source_inside_out(nasty: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="inside the source folder"):
        prepare_dataset(PrepareOptions(nasty, trigger="x", out=nasty / "out"))
    with pytest.raises(DatasetError, match="inside the output folder"):
        prepare_dataset(PrepareOptions(nasty, trigger="x", out=tmp_path))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.me").write_text("mine")
    with pytest.raises(DatasetError, match="was not written by lorakit"):
        prepare_dataset(PrepareOptions(nasty, trigger="x", out=foreign))
    assert (foreign / "keep.me").read_text() == "mine"


def test_all_broken_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"")
    (src / "b.png").write_text("nope")
    with pytest.raises(DatasetError, match="no usable image") as e:
        prepare_dataset(PrepareOptions(src, trigger="x"))
    assert "a.jpg: empty file (0 bytes)" in e.value.message
    assert not (tmp_path / "bad-prepared").exists()


def test_trigger_from_a_kohya_named_folder_and_trigger_merges_subfolders(tmp_path: Path) -> None:
    src = build_concepts(tmp_path / "raw", {"5_ohwx woman": 3})
    report = prepare_dataset(PrepareOptions(src / "5_ohwx woman", jobs=1))
    assert [c.folder for c in report.concepts] == ["10_ohwx woman"]  # trigger/class from the name; repeats re-chosen
    assert any("taken from the folder name" in n for n in report.notes)

    src2 = build_concepts(tmp_path / "raw2", {"indoor": 2, "outdoor": 2}, seed0=300)
    merged = prepare_dataset(PrepareOptions(src2, trigger="sks", jobs=1))
    assert not merged.multi
    assert sorted(r.output or "" for r in merged.records) == [
        "10_sks/indoor_img_00.jpg", "10_sks/indoor_img_01.jpg", "10_sks/outdoor_img_00.jpg", "10_sks/outdoor_img_01.jpg",
    ]  # fmt: skip


def test_top_level_images_without_trigger_is_an_error(tmp_path: Path) -> None:
    src = build_concepts(tmp_path / "raw", {"x": 1})
    photo(1, 64, 64).save(src / "top.jpg")
    with pytest.raises(DatasetError) as e:
        prepare_dataset(PrepareOptions(src))
    assert "no trigger was given" in e.value.message
    assert e.value.fix and "--trigger" in e.value.fix


def test_pool_with_another_thread_running(tmp_path: Path) -> None:
    """With a thread alive the pool must not fork this process (forkserver instead); same result."""
    import threading

    src = build_concepts(tmp_path / "raw", {"imgs": 4}, seed0=500)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        report = prepare_dataset(PrepareOptions(src / "imgs", trigger="sks", jobs=2))
    finally:
        stop.set()
        t.join()
    assert len(report.of("kept")) == 4
