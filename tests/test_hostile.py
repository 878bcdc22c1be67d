"""Hostile input: a corpus of bad, odd and booby-trapped files scans with exit 0, each bad file skipped with
its reason, each good file fingerprinted; and a dedup plan/apply/undo over it loses nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dupaudit import dedup as actions
from dupaudit.cli import app
from dupaudit.engine.pipeline import scan
from dupaudit.sample import procedural_image

runner = CliRunner()

META_NAME = """$(touch pwned) `id`; rm -rf ~ & <script>alert("x")<\\script> 'q' [red]x[bold] %s {} *.jpg"""
NON_UTF8 = "caf" + os.fsdecode(b"\xe9") + ".jpg"  # the bytes caf\xe9.jpg: Latin-1, not UTF-8
NON_UTF8_BAD = "broken" + os.fsdecode(b"\xff") + "[bold].jpg"
NEWLINE = "new\nline.jpg"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# bad file -> a word its reason must contain
BAD = {
    "truncated.jpg": "truncated",
    "empty.jpg": "empty",
    "text.jpg": "not an image",
    "bomb.png": "decompression bomb",
    "bomb_warn.png": "decompression bomb",  # between 1x and 2x Pillow's limit: Pillow only warns
    "huge_declared.jpg": "decompression bomb",
    "self_loop.jpg": "symlink",
    NON_UTF8_BAD: "corrupt",
}
GOOD = [
    "one_pixel.png",
    "cmyk.jpg",
    "cmyk_twin.png",
    "sixteen_bit.png",
    "eight_bit_twin.png",
    "palette_transparent.png",
    "palette_twin.png",
    "animated.gif",
    "first_frame.png",
    "photo.jpg",
    "photo_rotated_exif.jpg",
    NON_UTF8,
    "copy_of_cafe.jpg",
    NEWLINE,
    "copy_of_newline.jpg",
    META_NAME,
    "copy_of_meta.jpg",
]
if IS_ROOT:
    GOOD.append("no_read.jpg")  # root reads everything: permissions do not bite
else:
    BAD["no_read.jpg"] = "permission denied"
EXPECTED_GROUPS = [  # sets of names that must land in one group
    {"photo.jpg", "photo_rotated_exif.jpg"},  # EXIF orientation applied before hashing
    {"sixteen_bit.png", "eight_bit_twin.png"},  # 16-bit gray keeps its top 8 bits (not clipped to white)
    {"cmyk.jpg", "cmyk_twin.png"},  # CMYK converted to the RGB picture it shows
    {"palette_transparent.png", "palette_twin.png"},  # palette + transparency: the colours, alpha dropped
    {"animated.gif", "first_frame.png"},  # an animation is its first frame
    {NON_UTF8, "copy_of_cafe.jpg"},
    {NEWLINE, "copy_of_newline.jpg"},
    {META_NAME, "copy_of_meta.jpg"},
]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds a few bytes: a bomb that costs nothing to make."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) patched to declare another size."""
    index = 2
    while index < len(data):
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: index + 5] + struct.pack(">HH", height, width) + data[index + 9 :]
        index += 2 + length
    raise ValueError("no SOF marker")


def make_hostile(root: Path) -> None:
    root.mkdir(parents=True)
    photo = procedural_image(7, 96).resize((96, 64))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    good = buffer.getvalue()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("hello, I am not a picture\n")
    (root / "bomb.png").write_bytes(png_header(100_000, 100_000))
    (root / "bomb_warn.png").write_bytes(png_header(12_000, 12_000))
    (root / "huge_declared.jpg").write_bytes(jpeg_with_size(good, 65_500, 65_500))
    Image.new("RGB", (1, 1), (200, 30, 30)).save(root / "one_pixel.png")
    procedural_image(11, 64).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    procedural_image(11, 64).save(root / "cmyk_twin.png")
    gray = procedural_image(12, 64).convert("L")
    Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257).save(root / "sixteen_bit.png")
    gray.save(root / "eight_bit_twin.png")
    palette = procedural_image(13, 64).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    palette.save(root / "palette_transparent.png", transparency=0)
    procedural_image(13, 64).save(root / "palette_twin.png")
    frames = [procedural_image(14 + k, 48) for k in range(3)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(root / "first_frame.png")
    photo.save(root / "photo.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels are the photo turned anticlockwise
    photo.transpose(Image.Transpose.ROTATE_90).save(root / "photo_rotated_exif.jpg", quality=92, exif=exif.tobytes())
    os.symlink(".", root / "loop")  # a folder loop
    os.symlink("self_loop.jpg", root / "self_loop.jpg")  # a file link to itself
    procedural_image(15, 64).save(root / "no_read.jpg")
    os.chmod(root / "no_read.jpg", 0)
    procedural_image(16, 64).save(root / NON_UTF8)
    (root / NON_UTF8_BAD).write_bytes(good[:100])
    procedural_image(17, 64).save(root / NEWLINE)
    procedural_image(18, 64).save(root / META_NAME)
    for source, copy in (
        (NON_UTF8, "copy_of_cafe.jpg"),
        (NEWLINE, "copy_of_newline.jpg"),
        (META_NAME, "copy_of_meta.jpg"),
    ):
        (root / copy).write_bytes((root / source).read_bytes())


@pytest.fixture
def corpus(tmp_path: Path):
    root = tmp_path / "hostile"
    make_hostile(root)
    yield root
    os.chmod(root / "no_read.jpg", 0o644)  # let pytest clean up


def _check_report(data: dict) -> None:
    skipped = {s["path"]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == set(BAD), skipped
    for name, word in BAD.items():
        assert word in skipped[name].lower(), (name, skipped[name])
        assert "\n" not in skipped[name]
    assert data["summary"]["images"] == len(GOOD)  # every good file fingerprinted
    assert data["summary"]["skipped"] == len(BAD)
    groups = [{m["path"] for m in g["members"]} for g in data["groups"]]
    for expected in EXPECTED_GROUPS:
        assert expected in groups, (expected, groups)
    assert not any({"one_pixel.png", "sixteen_bit.png"} <= g for g in groups)


def test_cli_scan_of_the_hostile_corpus_exits_0(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    outputs = []
    for attempt in ("cold", "warm"):  # the second run reads the SQLite cache (with its odd names)
        json_file, csv_file = tmp_path / f"{attempt}.json", tmp_path / f"{attempt}.csv"
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "dupaudit",
                "scan",
                str(corpus),
                "--cache",
                str(cache),
                "-j",
                "1",
                "-f",
                "json",
                "--json",
                str(json_file),
                "--csv",
                str(csv_file),
            ],
            capture_output=True,
        )
        assert process.returncode == 0, process.stderr.decode(errors="replace")
        stdout = json.loads(process.stdout.decode("utf-8"))  # valid UTF-8 JSON whatever the file names
        assert stdout == json.loads(json_file.read_text(encoding="utf-8"))
        _check_report(stdout)
        assert os.fsencode(NON_UTF8) in csv_file.read_bytes()  # the CSV keeps a non-UTF-8 name's bytes
        outputs.append(stdout)
    assert outputs[0] == outputs[1]
    assert not (corpus / "pwned").exists() and not Path("pwned").exists()
    text = subprocess.run(
        [sys.executable, "-m", "dupaudit", "scan", str(corpus), "--no-cache", "-j", "1"],
        capture_output=True,
        env=dict(os.environ, COLUMNS="300"),
    )
    assert text.returncode == 0, text.stderr.decode(errors="replace")
    assert b"[red]x[bold]" in text.stdout  # names are printed, not read as rich markup
    assert b"new\\nline.jpg" in text.stdout  # a newline in a name stays on its row


def test_every_bad_file_has_a_reason_and_every_good_file_a_fingerprint(corpus: Path) -> None:
    from dupaudit.formats.json import render

    report = scan(corpus, jobs=2, use_cache=False)
    _check_report(json.loads(render(report)))
    photo_group = next(g for g in report.groups if any(m.path == "photo.jpg" for m in g.members))
    assert {(m.width, m.height) for m in photo_group.members} == {(96, 64)}  # the rotated twin, turned upright
    deep = next(g for g in report.groups if any(m.path == "sixteen_bit.png" for m in g.members))
    assert deep.kind == "pixel"  # 16-bit values >> 8 are exactly the 8-bit twin's pixels


def test_dedup_plan_apply_undo_over_hostile_names(corpus: Path, tmp_path: Path) -> None:
    def checksums() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in corpus.iterdir()
            if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)
        }

    before = checksums()
    plan_file = tmp_path / "plan.json"
    result = runner.invoke(
        app, ["dedup", str(corpus), "--plan", str(plan_file), "--keep", "first", "--no-cache", "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    plan = actions.read_plan(plan_file)
    dropped = {f.path for f in plan.drops}
    # --keep first: the first path of each group stays
    assert dropped == {
        "copy_of_meta.jpg",
        "copy_of_cafe.jpg",
        NEWLINE,
        "photo_rotated_exif.jpg",
        "sixteen_bit.png",
        "cmyk_twin.png",
        "palette_twin.png",
        "first_frame.png",
    }
    assert dropped.isdisjoint(BAD)

    # edit the plan by hand: keep the file whose name has a newline, drop its copy instead
    data = json.loads(plan_file.read_text(encoding="utf-8"))
    group = next(g for g in data["groups"] if g["drop"][0]["path"] == NEWLINE)
    group["keep"], group["drop"] = group["drop"], group["keep"]
    plan_file.write_text(json.dumps(data), encoding="utf-8")
    dropped = dropped - {NEWLINE} | {"copy_of_newline.jpg"}

    listing = tmp_path / "kept.txt"
    result = runner.invoke(app, ["dedup", "--plan", str(plan_file), "--list", str(listing)])
    assert result.exit_code == 2 and "--null" in result.output  # a newline in a name cannot be one line
    result = runner.invoke(
        app,
        ["dedup", "--plan", str(plan_file), "--list", str(listing), "--null", "--link-tree", str(tmp_path / "tree")],
    )
    assert result.exit_code == 0, result.output
    kept = set(GOOD) - dropped
    listed = {os.fsdecode(p) for p in listing.read_bytes().split(b"\0") if p}
    assert listed == {str(corpus / name) for name in kept}
    assert {p.name for p in (tmp_path / "tree").iterdir()} == kept

    quarantine = tmp_path / "q"
    result = runner.invoke(app, ["dedup", "--apply", str(plan_file), "--quarantine", str(quarantine)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (quarantine / "hostile").iterdir()} == dropped
    assert not (corpus / "pwned").exists()
    result = runner.invoke(app, ["undo", str(quarantine)])
    assert result.exit_code == 0, result.output
    assert checksums() == before
