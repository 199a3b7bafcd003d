"""The conversation engine without Discord: the fake OpenAI server, a real store (each backend), a surface in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import pytest

from bot.access import Gate
from bot.api import OpenAIClient
from bot.config import Settings
from bot.conversation import NOTE_OMITTED, Conversations, Question
from bot.identity import Identity
from bot.moderation import Moderator
from bot.records import Records
from bot.store import NewTurn, Store, open_store, utc_now
from bot.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAI, ModerationReply, Reply, StreamCut, context_too_long

CHAT = "/chat/completions"
CHANNEL, GUILD, USER = 10, 20, 30


@dataclass
class Posted:
    """A message the surface posted."""

    id: int
    content: str


@dataclass
class Surface:
    """A reply surface in memory; `on_show` sees each text the moment before it is shown."""

    posted: list[Posted] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    on_show: Callable[[str], Awaitable[None]] | None = None

    async def send(self, text: str, *, first: bool) -> Posted:
        if self.on_show is not None:
            await self.on_show(text)
        self.calls.append("send")
        self.posted.append(Posted(len(self.posted) + 1, text))
        return self.posted[-1]

    async def edit(self, message: Posted, text: str) -> Posted:  # type: ignore[override]
        if self.on_show is not None:
            await self.on_show(text)
        self.calls.append("edit")
        message.content = text
        return message

    async def typing(self) -> None:
        self.calls.append("typing")

    @property
    def text(self) -> str:
        return "\n".join(message.content for message in self.posted)


@dataclass
class World:
    """The engine and what it runs on."""

    engine: Conversations
    store: Store
    fake: FakeOpenAI


EngineFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_engine(fake_openai: FakeOpenAI, database_url: str) -> AsyncIterator[EngineFactory]:
    """Build the engine as the Bot does, over the real store and the real API client; keywords are settings."""
    closing: list[Callable[[], Awaitable[None]]] = []

    async def make(**env: str) -> World:
        settings = Settings.from_env(
            {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.base_url}
            | {"USER_REQUESTS_PER_MINUTE": "0", "GUILD_REQUESTS_PER_MINUTE": "0"}
            | env
        )
        store = await open_store(database_url)
        session = aiohttp.ClientSession()
        closing.extend([store.close, session.close])
        api = OpenAIClient(
            session, base_url=settings.openai_base_url, api_key="sk-test-key", timeout_seconds=5, max_retries=0
        )
        records = Records(store)
        gate = Gate(store, settings, records=records)
        moderator = Moderator(api, store, settings)
        engine = Conversations(
            settings=settings,
            store=store,
            records=records,
            gate=gate,
            api=api,
            moderator=moderator,
            tokens=TokenCounter(),
            identity=await Identity.load(store),
        )
        return World(engine, store, fake_openai)

    yield make
    for close in reversed(closing):
        await close()


def question(text: str, **fields: object) -> Question:
    defaults: dict[str, object] = {"channel_id": CHANNEL, "guild_id": GUILD, "author_id": USER, "author_name": "Ada"}
    return Question(text=text, **(defaults | fields))  # type: ignore[arg-type]


async def ask(world: World, text: str, surface: Surface | None = None, **fields: object) -> tuple[str | None, Surface]:
    """One turn, start to end, as a cog hands it over."""
    surface = surface or Surface()
    asked = question(text, **fields)
    place = world.engine.arrive(asked.channel_id)
    admission = await world.engine.admit(asked, role_ids=())
    return await world.engine.answer(place, asked, admission, surface), surface


def sent_turns(fake: FakeOpenAI, index: int = -1) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests_to(CHAT)[index].json["messages"][1:]]


async def test_a_turn_is_answered_stored_with_its_usage_and_carried_into_the_next(make_engine: EngineFactory) -> None:
    world = await make_engine()
    world.fake.queue(CHAT, Reply("Otters hold hands.", usage=(40, 5)), Reply("Yes, sea otters.", usage=(60, 6)))
    answer, surface = await ask(world, "Tell me about otters")
    assert answer == "Otters hold hands." and surface.text == "Otters hold hands."
    await ask(world, "Sea otters?")
    assert sent_turns(world.fake) == [
        ("user", "Ada: Tell me about otters"),
        ("assistant", "Otters hold hands."),
        ("user", "Ada: Sea otters?"),
    ]
    stored = await world.store.recent_turns(CHANNEL, 10)
    assert [(t.role, t.content, t.state) for t in stored] == [
        ("user", "Tell me about otters", "done"),
        ("assistant", "Otters hold hands.", "done"),
        ("user", "Sea otters?", "done"),
        ("assistant", "Yes, sea otters.", "done"),
    ]
    assert all(turn.tokens > 0 for turn in stored)  # counted once, when stored
    [usage] = await world.store.usage_by_model(stored[0].created_at, user_id=USER)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 100, 11)


async def test_a_quick_answer_is_shown_with_one_request_to_discord(make_engine: EngineFactory) -> None:
    world = await make_engine()
    world.fake.stream_chunk_chars = 10_000  # the whole answer in one piece
    _, surface = await ask(world, "Quick?")
    assert surface.calls == ["send"]


async def test_what_is_shown_is_in_the_store_before_it_is_shown(make_engine: EngineFactory) -> None:
    world = await make_engine()
    answer = "A long and winding answer, streamed in many little pieces over a second or so. " * 3
    world.fake.queue(CHAT, Reply(answer.strip()))
    world.fake.stream_chunk_chars, world.fake.chunk_delay = 20, 0.05
    stored_when_shown: list[tuple[str, str]] = []

    async def check(text: str) -> None:
        turns = await world.store.recent_turns(CHANNEL, 10)
        stored = next((t.content for t in turns if t.role == "assistant"), "")
        stored_when_shown.append((text, stored))

    await ask(world, "Go on", Surface(on_show=check))
    assert len(stored_when_shown) >= 2
    for shown, stored in stored_when_shown:
        assert stored.startswith(shown), (shown, stored)


async def test_turns_of_a_channel_are_answered_in_the_order_they_arrived(make_engine: EngineFactory) -> None:
    world = await make_engine()
    world.fake.chunk_delay = 0.02
    engine = world.engine
    first, second = question("first"), question("second")
    first_place, second_place = engine.arrive(CHANNEL), engine.arrive(CHANNEL)

    async def slow_screening() -> None:
        await asyncio.sleep(0.3)  # the first message's moderation takes a while
        await engine.answer(first_place, first, await engine.admit(first, role_ids=()), Surface())

    async def quick() -> None:
        await engine.answer(second_place, second, await engine.admit(second, role_ids=()), Surface())

    await asyncio.gather(slow_screening(), quick())
    stored = await world.store.recent_turns(CHANNEL, 10)
    assert [(t.role, t.content) for t in stored] == [
        ("user", "first"),
        ("assistant", "Echo: Ada: first"),
        ("user", "second"),
        ("assistant", "Echo: Ada: second"),
    ]


async def test_a_message_that_is_not_a_turn_leaves_its_place_without_holding_anyone(
    make_engine: EngineFactory,
) -> None:
    world = await make_engine()
    not_a_turn = world.engine.arrive(CHANNEL)  # a message in the channel that is not for the bot
    turn_place = world.engine.arrive(CHANNEL)
    not_a_turn.leave()
    asked = question("hello")
    answer = await asyncio.wait_for(
        world.engine.answer(turn_place, asked, await world.engine.admit(asked, role_ids=()), Surface()), 5
    )
    assert answer == "Echo: Ada: hello"
    assert not world.engine.order.busy(CHANNEL)


async def test_other_channels_never_wait_for_a_slow_answer(make_engine: EngineFactory) -> None:
    world = await make_engine()
    world.fake.first_chunk_delay = 1.0
    slow = asyncio.create_task(ask(world, "slow one"))
    await asyncio.sleep(0.1)
    world.fake.first_chunk_delay = 0.0
    answer, _ = await asyncio.wait_for(ask(world, "quick one", channel_id=CHANNEL + 1), 0.8)
    assert answer == "Echo: Ada: quick one"
    await slow


async def test_a_window_too_long_for_the_model_is_trimmed_and_tried_once_more(make_engine: EngineFactory) -> None:
    world = await make_engine(CONTEXT_TOKEN_BUDGET="3000", MAX_ANSWER_TOKENS="500")
    for index in range(12):
        world.fake.queue(CHAT, Reply("ok " * 80))
        await ask(world, f"question {index} " + "words " * 60)
    world.fake.queue(CHAT, context_too_long(), Reply("Fits now."))
    answer, surface = await ask(world, "last question")
    assert answer == "Fits now."
    before, after = world.fake.requests_to(CHAT)[-2:]
    assert len(after.json["messages"]) < len(before.json["messages"])
    assert NOTE_OMITTED in surface.text


async def test_a_stream_broken_part_way_keeps_what_was_shown_says_so_and_counts_its_tokens(
    make_engine: EngineFactory,
) -> None:
    world = await make_engine()
    world.fake.queue(CHAT, StreamCut("The first half of an answ"))
    world.fake.stream_chunk_chars, world.fake.chunk_delay = 5, 0.02
    answer, surface = await ask(world, "Explain")
    assert answer is None
    shown, _, note = surface.text.partition("\n\n-# ")
    # What arrived before the cut stays (the last bytes may die with the connection); the note says why it ends.
    assert len(shown) >= 15 and "The first half of an answ".startswith(shown)
    assert "interrupted" in note
    stored = await world.store.recent_turns(CHANNEL, 10)
    # The cut answer is not history to build on; the question is marked answered (it was told why).
    assert [(t.role, t.state) for t in stored] == [("user", "done")]
    [usage] = await world.store.usage_by_model(stored[0].created_at, user_id=USER)
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_an_answer_moderation_flags_is_withheld_and_kept_out_of_the_history(make_engine: EngineFactory) -> None:
    world = await make_engine(MODERATE_ANSWERS="true")
    world.fake.queue(CHAT, Reply("Something awful."))
    world.fake.queue("/moderations", ModerationReply(flagged=True, categories=("violence",)))
    answer, surface = await ask(world, "Say something")
    assert answer is None
    assert surface.calls == ["send"] and "withheld" in surface.text and "awful" not in surface.text
    stored = await world.store.recent_turns(CHANNEL, 10)
    assert [t.role for t in stored] == ["user"]


async def test_the_history_is_read_from_the_store_once_per_channel(make_engine: EngineFactory) -> None:
    world = await make_engine()
    reads = 0
    original = world.store.recent_turns

    async def counting(channel_id: int, limit: int) -> list:  # type: ignore[type-arg]
        nonlocal reads
        reads += 1
        return await original(channel_id, limit)

    world.store.recent_turns = counting  # type: ignore[method-assign]
    for index in range(5):
        await ask(world, f"turn {index}")
    assert reads == 1
    assert len(sent_turns(world.fake)) == 9


async def test_turns_stored_before_token_counts_were_kept_are_counted_when_read(make_engine: EngineFactory) -> None:
    world = await make_engine()
    await world.store.add_turn(CHANNEL, NewTurn("user", USER, "Ada", "an old question"))  # tokens 0
    await world.store.add_turn(CHANNEL, NewTurn("assistant", None, "assistant", "an old answer"))
    await ask(world, "a new question")
    assert sent_turns(world.fake) == [
        ("user", "Ada: an old question"),
        ("assistant", "an old answer"),
        ("user", "Ada: a new question"),
    ]


async def test_reset_forgets_the_history_in_the_store_and_in_memory(make_engine: EngineFactory) -> None:
    world = await make_engine()
    await ask(world, "remember this")
    assert await world.engine.reset(CHANNEL) == 2
    await ask(world, "fresh start")
    assert sent_turns(world.fake) == [("user", "Ada: fresh start")]


async def test_questions_stored_since_this_process_started_are_never_taken_up_as_interrupted(
    make_engine: EngineFactory,
) -> None:
    world = await make_engine()
    started = utc_now()
    await world.store.add_turn(CHANNEL, NewTurn("user", USER, "Ada", "being answered now", state="pending"))
    # A process whose shards became ready late: the question above is its own, answered as it came.
    assert await world.engine.interrupted(started - timedelta(minutes=5), before=started) == []
    # To a process started after it, it is what a crash left unanswered.
    [found] = await world.engine.interrupted(started - timedelta(minutes=5), before=utc_now() + timedelta(seconds=1))
    assert found.question.content == "being answered now" and found.cut_answer is None
