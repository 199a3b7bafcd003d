"""Shared pictures and the plan for a message's attachments: what the model gets, and what people are told."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bot.attachments import (
    AttachmentLimits,
    Kind,
    PlannedFile,
    SharedFile,
    UnusablePicture,
    classify,
    describe_unreadable,
    fitted_size,
    picture_tokens,
    plan_attachments,
    prepare_picture,
    read_attachments,
)
from tests.fakes.document_fixtures import encoded, png_bomb, png_claiming

ROOT = Path(__file__).resolve().parents[2]
ORIENTATION = 0x0112
RED, BLUE = (220, 20, 20), (20, 20, 220)


def screenshot(width: int = 2880, height: int = 1800) -> bytes:
    """A screenshot-like PNG: flat background, a dark bar, some text."""
    image = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 60), fill=(30, 30, 40))
    draw.text((40, 120), "Traceback (most recent call last):", fill=(0, 0, 0))
    return encoded(image, "PNG")


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel[:3], colour, strict=True))


# Sizes and tokens by OpenAI's rule for detail "high"


@pytest.mark.parametrize(
    ("size", "fitted", "tokens"),
    [
        ((1024, 1024), (768, 768), 765),  # OpenAI's own examples
        ((2048, 4096), (768, 1536), 1105),
        ((2880, 1800), (1229, 768), 1105),
        ((512, 512), (512, 512), 255),  # small pictures are not enlarged
        ((100, 5000), (41, 2048), 85 + 170 * 4),  # a long strip: the long side limit decides
    ],
)
def test_pictures_are_scaled_and_counted_as_openai_does(
    size: tuple[int, int], fitted: tuple[int, int], tokens: int
) -> None:
    assert fitted_size(*size) == fitted
    assert picture_tokens(*size) == tokens


def test_a_screenshot_comes_back_within_the_models_size_with_its_shape_and_cost() -> None:
    picture = prepare_picture(screenshot(), "Screenshot 2026-01-05.png")
    image = decoded(picture.data)
    assert (picture.width, picture.height) == image.size == (1229, 768)
    assert abs(picture.width / picture.height - 2880 / 1800) < 0.01
    assert picture.tokens == 1105
    assert picture.mime_type == "image/png" and image.format == "PNG"  # text stays sharp: lossless
    assert picture.filename == "Screenshot 2026-01-05.png"


def test_the_data_url_and_the_part_carry_the_encoded_picture() -> None:
    picture = prepare_picture(screenshot(800, 600), "small.png")
    header, _, payload = picture.data_url().partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(payload) == picture.data
    assert picture.part().to_json() == {"type": "image_url", "image_url": {"url": picture.data_url(), "detail": "high"}}


def test_an_exif_rotated_photo_comes_back_upright_without_its_metadata() -> None:
    stored = Image.new("RGB", (1600, 800), RED)
    stored.paste(BLUE, (800, 0, 1600, 800))  # stored sideways: red left, blue right
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "turn 90° clockwise to show": red ends up on top
    photo = encoded(stored, "JPEG", exif=exif.tobytes(), quality=95)

    picture = prepare_picture(photo, "IMG_2041.jpg")

    image = decoded(picture.data).convert("RGB")
    assert picture.mime_type == "image/jpeg"
    assert image.size == (picture.width, picture.height) == (768, 1536)
    assert near(image.getpixel((384, 100)), RED) and near(image.getpixel((384, 1436)), BLUE)
    assert ORIENTATION not in decoded(picture.data).getexif()


def test_a_transparent_png_stays_a_png_with_its_transparency() -> None:
    logo = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(logo).ellipse((50, 50, 350, 250), fill=(200, 30, 30, 255))

    picture = prepare_picture(encoded(logo, "PNG"), "logo.png")

    image = decoded(picture.data)
    assert picture.mime_type == "image/png" and image.mode == "RGBA"
    assert image.getpixel((5, 5))[3] == 0 and image.getpixel((200, 150))[3] == 255


def test_an_animated_gif_is_seen_by_its_first_frame_with_a_note() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in (RED, BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)

    picture = prepare_picture(buffer.getvalue(), "party.gif")

    assert near(decoded(picture.data).convert("RGB").getpixel((10, 10)), RED)
    assert picture.notes == ("`party.gif` is animated; I looked at its first frame.",)


def test_a_zip_renamed_png_is_refused_by_name() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("secret.txt", "not a picture")
    with pytest.raises(UnusablePicture) as caught:
        prepare_picture(archive.getvalue(), "holiday.png")
    assert caught.value.note == "`holiday.png` isn't a PNG, JPEG, WebP or GIF picture, so I couldn't look at it."


def test_a_format_outside_the_accepted_ones_is_never_parsed() -> None:
    # Pillow reads BMP happily; restricting Image.open keeps its parser away from strangers' bytes.
    with pytest.raises(UnusablePicture) as caught:
        prepare_picture(encoded(Image.new("RGB", (8, 8)), "BMP"), "old.png")
    assert "`old.png` isn't a PNG, JPEG, WebP or GIF picture" in caught.value.note


def test_a_corrupt_png_is_refused_as_damaged() -> None:
    whole = screenshot(400, 300)
    with pytest.raises(UnusablePicture) as caught:
        prepare_picture(whole[: len(whole) // 2], "cut-off.png")
    assert caught.value.note == "I couldn't read the picture `cut-off.png`; the file seems damaged."


def peak_memory_growth_mb(data: bytes, tmp_path: Path) -> float:
    """How far a fresh interpreter's peak memory grows while prepare_picture refuses `data` (it must refuse)."""
    source = tmp_path / "picture.bin"
    source.write_bytes(data)
    code = (
        "import resource, sys\n"
        "from bot.attachments import UnusablePicture, prepare_picture\n"
        f"data = open({str(source)!r}, 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    prepare_picture(data, 'bomb.png')\n"
        "    sys.exit('accepted')\n"
        "except UnusablePicture as refused:\n"
        "    print(refused.note)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    note, growth = run.stdout.strip().splitlines()
    assert "`bomb.png`" in note
    return float(growth)


def test_a_header_claiming_30000_by_30000_pixels_is_refused_unread(tmp_path: Path) -> None:
    claim = png_claiming(30_000, 30_000)  # 2.7 GB of pixels if decoded
    with pytest.raises(UnusablePicture) as caught:
        prepare_picture(claim, "huge.png")
    assert "`huge.png`" in caught.value.note and "Scale it down" in caught.value.note
    assert peak_memory_growth_mb(claim, tmp_path) < 20


def test_a_decompression_bomb_is_refused_by_its_header_without_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(10_000, 6_000)  # 60 KB that decode to 60 MB (180 MB once in colour)
    assert len(bomb) < 100_000
    with pytest.raises(UnusablePicture) as caught:
        prepare_picture(bomb, "bomb.png")
    assert caught.value.note == (
        "`bomb.png` is 10,000×6,000 pixels; I look at pictures under 50 megapixels. Scale it down and send it again."
    )
    assert peak_memory_growth_mb(bomb, tmp_path) < 20


# Before downloading: kinds and the plan


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        ("cat.png", "image/png", Kind.PICTURE),
        ("IMG_0001.JPG", None, Kind.PICTURE),
        ("unnamed", "image/webp", Kind.PICTURE),
        ("report.pdf", "application/pdf", Kind.PDF),
        ("server.log", None, Kind.TEXT),
        ("main.py", "text/x-python; charset=utf-8", Kind.TEXT),
        ("app.ts", "video/mp2t", Kind.TEXT),  # TypeScript, whatever the content type says
        ("data.json", "application/json", Kind.TEXT),
        ("Dockerfile", None, Kind.TEXT),
        (".gitignore", None, Kind.TEXT),
        ("notes", "text/plain; charset=utf-8", Kind.TEXT),
        ("diagram.svg", "image/svg+xml", Kind.TEXT),
        ("voice-message.ogg", "audio/ogg", Kind.MEDIA),
        ("clip.mp4", "video/mp4", Kind.MEDIA),
        ("backup.zip", "application/zip", Kind.OTHER),
        ("IMG_5000.HEIC", "image/heic", Kind.OTHER),
        ("program.exe", None, Kind.OTHER),
    ],
)
def test_attachments_are_classified_by_name_and_type(filename: str, content_type: str | None, kind: Kind) -> None:
    assert classify(filename, content_type) is kind


@pytest.mark.parametrize(
    ("filename", "note"),
    [
        ("backup.zip", "I can't read .zip files, so I left out `backup.zip`."),
        ("IMG_5000.HEIC", "I can't look at .heic pictures (`IMG_5000.HEIC`). Send it as a PNG, JPEG, WebP or GIF."),
        ("blob", "I can't tell what kind of file `blob` is, so I left it out."),
        ("we`ird\nname.bin", "I can't read .bin files, so I left out `we'ird name.bin`."),
    ],
)
def test_unreadable_files_are_named_in_a_short_note(filename: str, note: str) -> None:
    assert describe_unreadable(filename) == note


def test_the_plan_reads_what_it_can_and_names_the_rest() -> None:
    files = [
        SharedFile("a.png", "image/png", 1000),
        SharedFile("notes.md", "text/markdown", 2000),
        SharedFile("voice-message.ogg", "audio/ogg", 5000),
        SharedFile("b.jpg", "image/jpeg", 1000),
        SharedFile("c.gif", "image/gif", 1000),
        SharedFile("backup.zip", "application/zip", 1000),
        SharedFile("empty.txt", "text/plain", 0),
        SharedFile("huge.log", "text/plain", 200_000_000),
        SharedFile("paper.pdf", "application/pdf", 9000),
    ]

    plan = plan_attachments(files, AttachmentLimits(max_pictures=2, max_download_bytes=100_000_000), vision=True)

    assert [(planned.index, planned.kind) for planned in plan.read] == [
        (0, Kind.PICTURE),
        (1, Kind.TEXT),
        (3, Kind.PICTURE),
        (8, Kind.PDF),
    ]
    assert plan.media == (2,)
    assert plan.notes == (
        "I can't read .zip files, so I left out `backup.zip`.",
        "`empty.txt` is empty, so there was nothing to read.",
        "`huge.log` is 200 MB; I download files of at most 100 MB.",
        "I look at 2 pictures per message at most, so I left out `c.gif`.",
    )


def test_a_model_that_cannot_see_gets_no_pictures_and_the_person_is_told() -> None:
    files = [SharedFile("a.png", "image/png", 10), SharedFile("b.webp", "image/webp", 10), SharedFile("x.txt", None, 5)]

    plan = plan_attachments(files, AttachmentLimits(), vision=False)

    assert [planned.filename for planned in plan.read] == ["x.txt"]
    assert plan.notes == ("The model here can't see pictures, so I left out `a.png` and `b.webp`.",)


# Reading a turn's attachments


def test_a_turn_shares_its_text_allowance_and_names_what_did_not_fit() -> None:
    limits = AttachmentLimits(max_file_chars=100_000, max_turn_chars=150_000)
    logs = [(PlannedFile(index, Kind.TEXT, f"log{index}.txt"), b"x" * 80_000) for index in range(3)]

    read = read_attachments(logs, limits)

    assert [(shared.filename, shared.kept_chars) for shared in read.texts] == [
        ("log0.txt", 80_000),
        ("log1.txt", 70_000),
    ]
    assert read.notes == (
        "`log1.txt` is long: I read the first 70,000 of 80,000 characters.",
        "There was no room left for `log2.txt`: I read 150,000 characters of files per message at most.",
    )


def test_a_turns_parts_hold_the_text_with_its_files_then_the_pictures() -> None:
    downloads = [
        (PlannedFile(0, Kind.PICTURE, "shot.png"), screenshot(600, 400)),
        (PlannedFile(1, Kind.TEXT, "main.py"), b"print('hi')\n"),
        (PlannedFile(2, Kind.PICTURE, "broken.png"), b"\x89PNG\r\n\x1a\nnope"),
    ]

    read = read_attachments(downloads, AttachmentLimits())
    text, picture = read.parts("Ann: why does this fail?")

    assert text.to_json()["text"] == "Ann: why does this fail?\n\nFile `main.py`:\n```py\nprint('hi')\n```"
    assert picture.to_json()["image_url"]["url"].startswith("data:image/png;base64,")
    assert read.picture_tokens == picture_tokens(600, 400)
    assert read.notes == ("`broken.png` isn't a PNG, JPEG, WebP or GIF picture, so I couldn't look at it.",)


def test_a_turn_past_its_deadline_names_the_files_left_unread() -> None:
    downloads = [(PlannedFile(0, Kind.TEXT, "a.txt"), b"hello"), (PlannedFile(1, Kind.TEXT, "b.txt"), b"there")]
    calls = iter([False, True])

    read = read_attachments(downloads, AttachmentLimits(), stopping=lambda: next(calls))

    assert [shared.filename for shared in read.texts] == ["a.txt"]
    assert read.notes == ("I ran out of time before reading `b.txt`.",)


def test_a_limit_of_one_picture_is_worded_in_the_singular() -> None:
    files = [SharedFile("a.png", "image/png", 10), SharedFile("b.png", "image/png", 10)]
    plan = plan_attachments(files, AttachmentLimits(max_pictures=1, max_download_bytes=100_000_000), vision=True)
    assert plan.notes == ("I look at 1 picture per message at most, so I left out `b.png`.",)
