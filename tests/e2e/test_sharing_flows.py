"""What people share, end to end: pictures, text files, PDFs and replies reach the model; hostile files get notes."""

from __future__ import annotations

import io
import json

from PIL import Image

from tests.databases import query
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat_flows import bot_messages, open_conversation, speaker, wait_for_answer, wait_for_text
from tests.fakes.discord_emulator import DiscordEmulator, EmuFile
from tests.fakes.document_fixtures import deflate_bomb, make_pdf, png_claiming, text_page
from tests.fakes.openai_server import FakeOpenAI, Reply

CHAT = "/chat/completions"


def screenshot(width: int = 2880, height: int = 1800) -> EmuFile:
    """A PNG the size of a laptop screen's screenshot."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(buffer, "PNG")
    return EmuFile("screenshot.png", buffer.getvalue(), "image/png")


def log_file(kilobytes: int, name: str = "server.log") -> EmuFile:
    line = "2026-12-02 10:00:00 INFO request handled in 12 ms\n"
    return EmuFile(name, (line * (kilobytes * 1000 // len(line) + 1)).encode()[: kilobytes * 1000], "text/plain")


def request_json(fake: FakeOpenAI, index: int = -1) -> dict[str, object]:
    return fake.requests_to(CHAT)[index].json  # type: ignore[no-any-return]


def user_texts(fake: FakeOpenAI, index: int = -1) -> list[str]:
    """The text of each user message of a chat request (a message with pictures: its text parts)."""
    request = fake.requests_to(CHAT)[index]
    roles = [message["role"] for message in request.json["messages"]]
    return [text for role, text in zip(roles, fake.message_texts(request), strict=True) if role == "user"]


async def final_answer(emulator: DiscordEmulator, channel_id: int, fragment: str) -> str:
    """The bot's whole answer that starts with the message containing `fragment` (all its messages, the notes
    under it included), once the next answer has come too."""
    first = await wait_for_text(emulator, channel_id, fragment)
    await emulator.send_message(channel_id, emulator.member, f"<@{emulator.bot_user.id}> next")
    following = await wait_for_text(emulator, channel_id, "Echo: Member: next")
    parts = [m.content for m in bot_messages(emulator, channel_id) if first.id <= m.id < following.id]
    return "\n".join(parts)


async def test_a_screenshot_in_a_thread_reaches_the_model_as_a_picture_and_is_named_ten_turns_later(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="0"):
        thread_id = await open_conversation(emulator, emulator.member, "I'll show you my screen")
        await wait_for_answer(emulator, thread_id, f"Echo: {speaker(emulator.member)}: I'll show you my screen")
        await emulator.send_message(thread_id, emulator.member, "What is on it?", attachments=[screenshot()])
        await wait_for_answer(emulator, thread_id, f"Echo: {speaker(emulator.member)}: What is on it?")
        pictured = fake_openai.requests_to(CHAT)[-1]
        for index in range(10):
            await emulator.send_message(thread_id, emulator.member, f"follow-up {index}")
            await wait_for_answer(emulator, thread_id, f"Echo: {speaker(emulator.member)}: follow-up {index}")

    [picture] = fake_openai.image_parts(pictured)
    assert (picture.width, picture.height) == (1229, 768)  # within 2048 x 768, its shape kept
    assert emulator.base_url not in json.dumps(pictured.json)  # never a Discord link
    assert "[picture: screenshot.png]" not in json.dumps(pictured.json)
    later = fake_openai.requests_to(CHAT)[-1]
    assert fake_openai.image_parts(later) == []
    assert any(text.endswith("What is on it?\n[picture: screenshot.png]") for text in user_texts(fake_openai))
    # Shown a few turns later still (PICTURE_TURNS, default 5).
    assert len(fake_openai.image_parts(fake_openai.requests_to(CHAT)[-8])) == 1


async def test_the_tokens_of_a_picture_count_against_the_window(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(CONTEXT_TOKEN_BUDGET="1600", MAX_ANSWER_TOKENS="400"):
        thread_id = await open_conversation(emulator, emulator.member, "words " * 100)
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "And this?", attachments=[screenshot()])
        answer = await final_answer(emulator, thread_id, "And this?")
    # 1,105 tokens of picture leave no room for the first turn in a 1,200-token budget.
    assert "Older messages in this conversation were left out" in answer
    assert user_texts(fake_openai, -2) == [f"{speaker(emulator.member)}: And this?"]


async def test_text_files_arrive_under_their_names_and_a_long_one_is_cut_with_a_note(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(CONTEXT_TOKEN_BUDGET="120000", MAX_ANSWER_TOKENS="4000"):
        thread_id = await open_conversation(emulator, emulator.member, "Logs coming")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "Why slow?", attachments=[log_file(40)])
        await wait_for_text(emulator, thread_id, "Why slow?")
        whole = user_texts(fake_openai)[-1]
        await emulator.send_message(thread_id, emulator.member, "And this?", attachments=[log_file(500, "big.log")])
        cut = await final_answer(emulator, thread_id, "And this?")
    cut_text = user_texts(fake_openai, -2)[-1]
    assert "server.log" in whole and whole.count("request handled in 12 ms") >= 800
    assert "big.log" in cut_text and "The file is cut here: kept the first" in cut_text
    assert "-# `big.log` is long" in cut  # a note for the person under the answer


async def test_a_pdfs_text_arrives_and_a_scanned_one_gets_a_note(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    spec = EmuFile("spec.pdf", make_pdf([text_page("The widget must be blue.")]), "application/pdf")
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Read this")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "Which colour?", attachments=[spec])
        await wait_for_text(emulator, thread_id, "Which colour?")
    assert "The widget must be blue." in user_texts(fake_openai)[-1]
    assert "spec.pdf" in user_texts(fake_openai)[-1]


async def test_a_model_that_cannot_see_answers_the_text_with_a_note(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(VISION_MODELS="nothing-sees-*"):
        thread_id = await open_conversation(emulator, emulator.member, "Look")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "What is it?", attachments=[screenshot()])
        answer = await final_answer(emulator, thread_id, "What is it?")
    assert fake_openai.image_parts(fake_openai.requests_to(CHAT)[-2]) == []
    assert "can't see pictures" in answer and "screenshot.png" in answer


async def test_a_reply_to_a_message_that_fell_out_of_the_window_carries_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    old = await emulator.send_message(emulator.general.id, emulator.moderator, "The meeting moved to Thursday.")
    async with run_bot():
        reply = await emulator.send_message(
            emulator.general.id,
            emulator.member,
            f"<@{emulator.bot_user.id}> Which day was it?",
            reply_to=int(old["id"]),
        )
        await wait_for_text(emulator, emulator.general.id, "Which day was it?")
    [asked] = user_texts(fake_openai)
    assert asked == (
        f'{speaker(emulator.member)}: (replying to {speaker(emulator.moderator)}: "The meeting moved to Thursday.")\n'
        "Which day was it?"
    )
    assert int(reply["id"]) > int(old["id"])


async def test_a_reply_to_a_message_in_the_window_does_not_repeat_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        first = await emulator.send_message(emulator.general.id, emulator.member, f"<@{emulator.bot_user.id}> Hello")
        answer = await wait_for_text(emulator, emulator.general.id, "Echo:")
        await emulator.send_message(
            emulator.general.id, emulator.member, f"<@{emulator.bot_user.id}> More please", reply_to=answer.id
        )
        await wait_for_text(emulator, emulator.general.id, "More please")
    assert user_texts(fake_openai)[-1] == f"{speaker(emulator.member)}: More please"
    assert int(first["id"]) < answer.id


async def test_a_reply_whose_message_cannot_be_fetched_is_answered_without_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    old = await emulator.send_message(emulator.general.id, emulator.moderator, "Soon gone.")
    async with run_bot():
        await emulator.delete_message(int(old["id"]))
        # Discord sends a reply whose target it could not load with message_reference and no referenced_message.
        sent = await emulator.send_message(emulator.general.id, emulator.member, f"<@{emulator.bot_user.id}> Hm?")
        reply = {
            **sent,
            "id": str(emulator.snowflake()),
            "content": f"<@{emulator.bot_user.id}> What did it say?",
            "type": 19,
            "message_reference": {"message_id": old["id"], "channel_id": str(emulator.general.id)},
        }
        await emulator.dispatch_event("MESSAGE_CREATE", reply)
        await wait_for_text(emulator, emulator.general.id, "What did it say?")
    assert "Soon gone." not in json.dumps(request_json(fake_openai))


async def test_reasoning_in_think_tags_split_across_chunks_is_never_shown_or_kept(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("The answer is 4.", think="Two plus two... carry nothing... four."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "2+2?")
        await wait_for_answer(emulator, thread_id, "The answer is 4.")
        await emulator.send_message(thread_id, emulator.member, "Sure?")
        await wait_for_text(emulator, thread_id, "Sure?")
    shown = [revision for message in bot_messages(emulator, thread_id) for _, revision in message.timeline]
    assert not any("think" in text or "carry nothing" in text for text in shown)
    assert "carry nothing" not in json.dumps(request_json(fake_openai))  # nor in the history sent later


async def test_hostile_files_each_get_a_note_and_the_bot_stays_well(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    hostile = [
        EmuFile("holiday.png", b"PK\x03\x04" + b"\x00" * 200, "image/png"),  # a zip named .png
        EmuFile("huge.png", png_claiming(30_000, 30_000), "image/png"),
        EmuFile("bomb.pdf", make_pdf([deflate_bomb(64)], flate=[True]), "application/pdf"),
        EmuFile("archive.zip", b"PK\x03\x04" + b"\x00" * 100, "application/zip"),
        EmuFile("big.txt", b"x" * 50_000_000, "text/plain"),
    ]
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Files incoming")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "Look at these", attachments=hostile)
        answer = await final_answer(emulator, thread_id, "Look at these")
    for name in ("holiday.png", "huge.png", "bomb.pdf", "archive.zip", "big.txt"):
        assert name in answer, name
    assert "I can't read .zip files" in answer
    assert fake_openai.image_parts(fake_openai.requests_to(CHAT)[-2]) == []


async def test_chat_takes_a_picture_as_an_option(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        await emulator.invoke_slash(
            emulator.member, emulator.general.id, "chat", {"prompt": "What is this?", "image": screenshot(800, 600)}
        )
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        await wait_for_text(emulator, thread.id, "What is this?")
    [picture] = fake_openai.image_parts(fake_openai.requests_to(CHAT)[-1])
    assert (picture.width, picture.height) == (800, 600)


async def test_a_picture_is_still_seen_after_a_restart(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "A picture follows")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "Keep this", attachments=[screenshot(640, 480)])
        await wait_for_text(emulator, thread_id, "Keep this")
    async with run_bot():
        await emulator.send_message(thread_id, emulator.member, "What was in my picture?")
        await wait_for_text(emulator, thread_id, "What was in my picture?")
    [picture] = fake_openai.image_parts(fake_openai.requests_to(CHAT)[-1])
    assert (picture.width, picture.height) == (640, 480)


async def test_reset_forgets_the_pictures_too(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, database_url: str
) -> None:
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "A picture follows")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "Keep this", attachments=[screenshot(640, 480)])
        await wait_for_text(emulator, thread_id, "Keep this")
        reset = await emulator.invoke_slash(emulator.member, thread_id, "reset")
        await reset.wait_done()
    [(left,)] = await query(database_url, "SELECT COUNT(*) FROM turn_pictures")
    assert int(left) == 0  # type: ignore[call-overload]
