"""lorakit.fs: the one atomic write/copy (modes, cleanup, no clobber, suffix kept)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorakit import fs
from lorakit.kohya.setup import write_record
from lorakit.run import folder
from lorakit.run.finish import copy_lora


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_run_files_get_the_umask_mode_not_0600(tmp_path: Path, umask022: None) -> None:
    folder.write_files(tmp_path, {"spec.yaml": "a: 1\n"})
    folder.write_state(tmp_path, {"status": "planned"})
    fs.atomic_write(tmp_path / "x.bin", b"x", durable=False)
    assert {mode(tmp_path / n) for n in ("spec.yaml", "state.json", "x.bin")} == {0o644}


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_copied_lora_is_readable_by_others_and_never_narrower_than_the_source(tmp_path: Path, umask022: None) -> None:
    src = tmp_path / "run" / "a.safetensors"
    src.parent.mkdir()
    src.write_bytes(b"lora")
    os.chmod(src, 0o600)  # a LoRA from an older lorakit
    done = copy_lora(src, tmp_path / "loras")
    assert done.action == "copied" and mode(done.dest) == 0o644
    wide = tmp_path / "run" / "b.safetensors"
    wide.write_bytes(b"other")
    os.chmod(wide, 0o664)
    assert mode(copy_lora(wide, tmp_path / "loras").dest) == 0o664
    assert src.read_bytes() == b"lora" and mode(src) == 0o600  # the source is untouched


def test_an_exception_mid_write_leaves_no_temp_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), fs.atomic_open(target) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_copy_without_clobber_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        fs.atomic_copy(tmp_path / "a", tmp_path / "b", clobber=False)
    assert (tmp_path / "b").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_atomic_path_keeps_the_suffix_and_renames_at_the_end(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "model.safetensors"
    with fs.atomic_path(final) as tmp:
        assert tmp.suffix == ".safetensors" and tmp.parent == final.parent and tmp != final
        tmp.write_bytes(b"w")
        assert not final.exists()
    assert final.read_bytes() == b"w" and not tmp.exists()


def test_text_is_utf8_with_newlines_as_given(tmp_path: Path) -> None:
    rec = write_record({"python": "é"}, tmp_path / "trainer.json")
    raw = rec.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"}\n")
    fs.write_json(tmp_path / "s.json", {"loss": float("nan")})
    assert (tmp_path / "s.json").read_bytes() == b'{\n  "loss": "nan"\n}\n'


def test_move_no_replace_never_overwrites(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    assert fs.move_no_replace(a, b) is False and b.read_text() == "2" and a.exists()
    assert fs.move_no_replace(a, tmp_path / "c") is True and not a.exists()


def test_link_or_copy_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    fs.link_or_copy(tmp_path / "a", tmp_path / "out" / "a")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]
