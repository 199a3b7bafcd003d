"""The API client against the in-process fake OpenAI server: requests, streams, retries, errors."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from bot.api import OpenAIClient
from bot.chat_messages import ChatMessage, ChatRequest, ChatResult, ImagePart, TextPart
from bot.errors import ApiError, ApiErrorKind
from tests.fakes.openai_server import (
    ApiErrorReply,
    FakeOpenAI,
    Hang,
    HugeLine,
    Reply,
    StreamCut,
    StreamError,
    bad_key,
    context_too_long,
    quota_exhausted,
    rate_limited,
    server_error,
    unknown_model,
)

KEY = "sk-test-key"
CHAT = "/chat/completions"


class SleepRecorder:
    """Stands in for asyncio.sleep so retries are instant and their delays visible."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(fake_openai: FakeOpenAI, sleeps: SleepRecorder) -> AsyncIterator[OpenAIClient]:
    async with aiohttp.ClientSession() as session:
        yield OpenAIClient(
            session, base_url=fake_openai.base_url, api_key=KEY, timeout_seconds=0.5, max_retries=2, sleep=sleeps
        )


def request(text: str = "Hello", **overrides: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": "gpt-5-mini",
        "messages": [ChatMessage("system", "Be brief."), ChatMessage("user", f"Ann: {text}", name="user_1")],
        "max_completion_tokens": 100,
        **overrides,
    }
    return ChatRequest(**fields)  # type: ignore[arg-type]


async def complete(client: OpenAIClient, chat: ChatRequest) -> ChatResult:
    """The finished result of a streamed answer."""
    results = [result async for _, result in client.stream_chat(chat)]
    return results[-1]


async def collect(client: OpenAIClient, chat: ChatRequest) -> tuple[list[str], str, str | None]:
    deltas: list[str] = []
    final = None
    async for delta, result in client.stream_chat(chat):
        if delta:
            deltas.append(delta)
        final = result
    assert final is not None
    return deltas, final.text, final.finish_reason


async def test_a_chat_request_sends_a_spec_valid_body_and_returns_text_and_usage(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, Reply("Hi there", usage=(12, 3)))
    result = await complete(client, request(safety_identifier="abc123"))
    assert result.text == "Hi there"
    assert result.finish_reason == "stop"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)  # type: ignore[union-attr]
    sent = fake_openai.requests_to(CHAT)[0]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json["max_completion_tokens"] == 100
    assert "max_tokens" not in sent.json
    assert "temperature" not in sent.json  # only when the user set it
    assert sent.json["safety_identifier"] == "abc123"
    assert sent.json["messages"][1] == {"role": "user", "content": "Ann: Hello", "name": "user_1"}


async def test_temperature_is_sent_when_set(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    await complete(client, request(model="gpt-4.1-mini", temperature=0.7))
    assert fake_openai.requests_to(CHAT)[0].json["temperature"] == 0.7


async def test_a_reasoning_model_is_sent_no_temperature_and_the_result_says_so(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    result = await complete(client, request(model="gpt-5-mini", temperature=0.7))
    assert "temperature" not in fake_openai.requests_to(CHAT)[0].json
    assert result.text == "Echo: Ann: Hello" and result.temperature_ignored
    assert not (await complete(client, request(model="gpt-5-mini"))).temperature_ignored  # none was asked for


async def test_which_models_reason_is_the_owners_setting(fake_openai: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        client = OpenAIClient(
            session,
            base_url=fake_openai.base_url,
            api_key=KEY,
            timeout_seconds=1,
            max_retries=0,
            reasoning_models=("my-thinker*",),
        )
        assert not client.takes_temperature("My-Thinker-2") and client.takes_temperature("gpt-4.1")
        await complete(client, request(model="my-thinker-2", temperature=0.3))
        assert "temperature" not in fake_openai.requests_to(CHAT)[-1].json
        # gpt-5-mini reasons, but these patterns do not say so: the API's 400 names the temperature.
        with pytest.raises(ApiError) as caught:
            await complete(client, request(model="gpt-5-mini", temperature=0.7))
    assert (caught.value.kind, caught.value.code, caught.value.param) == (
        ApiErrorKind.BAD_REQUEST,
        "unsupported_value",
        "temperature",
    )
    assert "`gpt-5-mini` takes no temperature" in caught.value.user_message()
    assert "REASONING_MODELS" in caught.value.user_message()
    assert len(fake_openai.requests_to(CHAT)) == 2  # a 400 is never retried


async def test_stream_yields_the_text_piece_by_piece_with_usage(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, Reply("The quick brown fox jumps over the lazy dog.", usage=(20, 11)))
    fake_openai.chunk_delay = 0.02  # pieces that arrive apart are handed over apart
    final = None
    deltas = []
    async for delta, result in client.stream_chat(request()):
        deltas.append(delta)
        final = result
    assert final is not None
    assert len([d for d in deltas if d]) > 1
    assert "".join(deltas) == final.text == "The quick brown fox jumps over the lazy dog."
    assert final.finish_reason == "stop"
    assert final.usage is not None and final.usage.output_tokens == 11
    sent = fake_openai.requests_to(CHAT)[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_pieces_that_arrive_together_are_handed_over_together_with_the_end(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, Reply("All of it at once.", usage=(5, 4)))
    items = [(delta, result.complete) async for delta, result in client.stream_chat(request())]
    # Nothing to show before the end: the whole answer comes once, known to be whole.
    assert items == [("All of it at once.", True)]


async def test_stream_reports_length_cutoff(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, Reply("partial answ", finish_reason="length"))
    _, text, finish = await collect(client, request())
    assert (text, finish) == ("partial answ", "length")


async def test_rate_limit_waits_retry_after_then_succeeds(
    client: OpenAIClient, fake_openai: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    fake_openai.queue(CHAT, rate_limited(retry_after=1.5), Reply("ok"))
    _, text, _ = await collect(client, request())
    assert text == "ok"
    assert sleeps.delays == [1.5]
    assert len(fake_openai.requests_to(CHAT)) == 2


async def test_retry_after_ms_is_preferred(
    client: OpenAIClient, fake_openai: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    fake_openai.queue(
        CHAT, ApiErrorReply(429, "requests", "rate_limit_exceeded", "slow down", retry_after=3, retry_after_ms=250)
    )
    await complete(client, request())
    assert sleeps.delays == [0.25]


async def test_a_long_rate_limit_is_not_waited_out(
    client: OpenAIClient, fake_openai: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    fake_openai.queue(CHAT, rate_limited(retry_after=600))
    with pytest.raises(ApiError) as caught:
        await complete(client, request())
    assert caught.value.kind is ApiErrorKind.RATE_LIMITED
    assert caught.value.retry_after == 600
    assert sleeps.delays == []
    assert "600 s" in caught.value.user_message()


async def test_exhausted_quota_is_never_retried(
    client: OpenAIClient, fake_openai: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    fake_openai.queue(CHAT, quota_exhausted())
    with pytest.raises(ApiError) as caught:
        await collect(client, request())
    assert caught.value.kind is ApiErrorKind.QUOTA_EXHAUSTED
    assert len(fake_openai.requests_to(CHAT)) == 1
    assert sleeps.delays == []
    assert "credit" in caught.value.user_message()


async def test_server_errors_back_off_exponentially_with_jitter_then_give_up(
    client: OpenAIClient, fake_openai: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    fake_openai.queue(CHAT, server_error(), server_error(), server_error())
    with pytest.raises(ApiError) as caught:
        await complete(client, request())
    assert caught.value.kind is ApiErrorKind.SERVER_ERROR
    assert len(fake_openai.requests_to(CHAT)) == 3  # the first try and two retries
    first, second = sleeps.delays
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


async def test_any_5xx_is_retried(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, ApiErrorReply(529, "server_error", None, "Overloaded"), Reply("recovered"))
    assert (await complete(client, request())).text == "recovered"


async def test_a_server_error_then_success_succeeds(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, server_error(), Reply("recovered"))
    assert (await complete(client, request())).text == "recovered"


async def test_a_hanging_server_times_out(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, Hang())
    with pytest.raises(ApiError) as caught:
        await collect(client, request())
    assert caught.value.kind is ApiErrorKind.TIMEOUT


async def test_a_cut_stream_is_reported_after_the_text_that_arrived(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, StreamCut("Half of the ans"))
    # aiohttp drops bytes still buffered when it sees the close: let the pieces arrive apart, as in real life.
    fake_openai.chunk_delay = 0.02
    seen = []
    with pytest.raises(ApiError) as caught:
        async for delta, _ in client.stream_chat(request()):
            seen.append(delta)
    assert caught.value.kind is ApiErrorKind.STREAM_BROKEN
    arrived = "".join(seen)
    assert arrived and "Half of the ans".startswith(arrived)


async def test_an_error_event_inside_a_stream_is_classified(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, StreamError("Some text", "server_error", "server_error", "The server had an error"))
    with pytest.raises(ApiError) as caught:
        await collect(client, request())
    assert caught.value.kind is ApiErrorKind.SERVER_ERROR


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (unknown_model("gpt-nope"), ApiErrorKind.MODEL_NOT_FOUND),
        (context_too_long(), ApiErrorKind.CONTEXT_TOO_LONG),
        (bad_key(), ApiErrorKind.BAD_KEY),
        (
            ApiErrorReply(403, "invalid_request_error", None, "Org must be verified"),
            ApiErrorKind.ORGANIZATION_NOT_VERIFIED,
        ),
        (
            ApiErrorReply(403, "invalid_request_error", "unsupported_country_region_territory", "No"),
            ApiErrorKind.FORBIDDEN,
        ),
        (ApiErrorReply(400, "invalid_request_error", "invalid_value", "Bad"), ApiErrorKind.BAD_REQUEST),
    ],
)
async def test_errors_are_classified_by_code_and_type(
    client: OpenAIClient, fake_openai: FakeOpenAI, behaviour: ApiErrorReply, kind: ApiErrorKind
) -> None:
    fake_openai.queue(CHAT, behaviour)
    with pytest.raises(ApiError) as caught:
        await complete(client, request())
    assert caught.value.kind is kind
    assert len(fake_openai.requests_to(CHAT)) == 1


async def test_an_unreachable_server_is_retried_then_reported(sleeps: SleepRecorder) -> None:
    async with aiohttp.ClientSession() as session:
        client = OpenAIClient(
            session, base_url="http://127.0.0.1:9/v1", api_key=KEY, timeout_seconds=2, max_retries=1, sleep=sleeps
        )
        with pytest.raises(ApiError) as caught:
            await complete(client, request())
    assert caught.value.kind is ApiErrorKind.UNREACHABLE
    assert len(sleeps.delays) == 1


async def test_the_key_never_appears_in_errors_or_logs(sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-proj-SECRETsecret1234567890"
    fake_openai = FakeOpenAI(validator=None, api_key=secret)
    await fake_openai.start()
    fake_openai.queue(
        CHAT,
        ApiErrorReply(401, "invalid_request_error", "invalid_api_key", f"Incorrect API key provided: {secret}."),
        ApiErrorReply(500, "server_error", None, f"echo {secret}"),
        ApiErrorReply(500, "server_error", None, f"echo {secret}"),
        ApiErrorReply(500, "server_error", None, f"echo {secret}"),
    )
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as session:
        client = OpenAIClient(
            session, base_url=fake_openai.base_url, api_key=secret, timeout_seconds=1, max_retries=2, sleep=sleeps
        )
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                await complete(client, request())
            assert secret not in str(caught.value)
            assert secret not in caught.value.detail
            assert secret not in caught.value.user_message()
    await fake_openai.close()
    assert [r.headers["Authorization"] for r in fake_openai.requests] == [f"Bearer {secret}"] * 4
    assert secret not in caplog.text


# Reasoning never reaches the answer


async def test_a_think_section_split_across_chunks_is_left_out_of_the_answer(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, Reply("The answer is 4.", think="The user asks 2+2. That is 4."))
    deltas, text, finish = await collect(client, request())
    assert (text, finish) == ("The answer is 4.", "stop")
    assert "".join(deltas) == text
    assert not any("think" in delta or "2+2" in delta for delta in deltas)


async def test_an_answer_after_a_think_section_starts_at_its_first_word(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, Reply("Hello!", think="\nGreet them.\n"))
    # Servers put a blank line between the section and the answer: it must not open the Discord message.
    fake_openai.queue(CHAT, Reply("\n\nHello!", think="\nGreet them.\n"))
    first = await complete(client, request())
    second = await complete(client, request())
    assert first.text == second.text == "Hello!"
    assert first.saw_reasoning and second.saw_reasoning


async def test_reasoning_content_deltas_do_not_reach_the_text(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, Reply("Paris.", reasoning_content="The capital of France is Paris.", reasoning_tokens=7))
    deltas, text, _ = await collect(client, request())
    result = await complete(client, request())  # the default echo: no reasoning
    assert text == "".join(deltas) == "Paris."
    assert not result.saw_reasoning


async def test_reasoning_tokens_are_read_from_usage(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(CHAT, Reply("Paris.", reasoning_content="Thinking.", usage=(30, 70), reasoning_tokens=64))
    result = await complete(client, request())
    assert result.usage is not None
    assert (result.usage.output_tokens, result.usage.reasoning_tokens) == (70, 64)
    assert result.saw_reasoning


async def test_a_think_section_left_open_leaves_no_visible_text(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    # A reasoning model cut off by max_completion_tokens while still thinking.
    fake_openai.queue(CHAT, Reply("", finish_reason="length"))
    fake_openai.queue(CHAT, Reply("<think>Still working on i", finish_reason="length"))
    empty = await complete(client, request())
    unfinished = await complete(client, request())
    assert (empty.text, empty.finish_reason) == ("", "length")
    assert (unfinished.text, unfinished.finish_reason) == ("", "length")
    assert unfinished.saw_reasoning


async def test_an_answer_mentioning_the_tag_comes_through(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    answer = "Models such as R1 wrap reasoning in `<think>` tags; a < b holds."
    fake_openai.queue(CHAT, Reply(answer))
    fake_openai.stream_chunk_chars = 3
    assert (await complete(client, request())).text == answer


async def test_an_event_longer_than_the_line_limit_is_a_broken_stream(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(CHAT, HugeLine(text_before="Start. "))
    seen = []
    with pytest.raises(ApiError) as caught:
        async for delta, _ in client.stream_chat(request()):
            seen.append(delta)
    assert caught.value.kind is ApiErrorKind.STREAM_BROKEN
    assert "".join(seen) == "Start. "


# Messages with pictures


async def test_a_message_with_parts_is_sent_as_a_list_and_keeps_its_text(
    client: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    png = _tiny_png_data_url()
    message = ChatMessage.with_parts(
        "user", [TextPart("Ann: what is this?"), ImagePart(png), TextPart("(one picture)")], name="user_1"
    )
    await complete(client, request(messages=[ChatMessage("system", "Be brief."), message]))
    sent = fake_openai.requests_to(CHAT)[0]
    assert message.content == "Ann: what is this?\n\n(one picture)"
    assert sent.json["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": png, "detail": "high"}}
    assert [(image.format, image.width, image.height) for image in fake_openai.image_parts(sent)] == [("PNG", 2, 1)]
    assert fake_openai.message_texts(sent)[1] == "Ann: what is this?\n(one picture)"


async def test_a_model_that_cannot_see_refuses_pictures(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    message = ChatMessage.with_parts("user", [TextPart("Ann: look"), ImagePart(_tiny_png_data_url())])
    with pytest.raises(ApiError) as caught:
        await complete(client, request(model="gpt-3.5-turbo", messages=[message]))
    assert caught.value.kind is ApiErrorKind.BAD_REQUEST


def _tiny_png_data_url() -> str:
    """A 2x1 PNG as a data: URL."""
    buffer = io.BytesIO()
    Image.new("RGB", (2, 1), (200, 10, 10)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def test_a_password_in_the_base_url_is_sent_as_basic_auth_and_never_shown(
    fake_openai: FakeOpenAI, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with_password = fake_openai.base_url.replace("http://", "http://proxy-user:proxy-pass@")
    async with aiohttp.ClientSession() as session:
        client = OpenAIClient(session, base_url=with_password, api_key="", timeout_seconds=1, max_retries=0)
        with pytest.raises(ApiError) as refused:  # the fake wants its Bearer key: the Basic auth is refused
            await client.get_json("/models")
        unreachable = OpenAIClient(
            session,
            base_url="http://proxy-user:proxy-pass@127.0.0.1:9/v1",
            api_key="",
            timeout_seconds=1,
            max_retries=1,
            sleep=sleeps,
        )
        with pytest.raises(ApiError) as failed:
            await unreachable.get_json("/models")
    sent = fake_openai.requests[0].headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"proxy-user:proxy-pass").decode()
    assert refused.value.kind is ApiErrorKind.BAD_KEY and failed.value.kind is ApiErrorKind.UNREACHABLE
    shown = [str(refused.value), str(failed.value), refused.value.user_message(), caplog.text]
    assert len(sleeps.delays) == 1 and "retry 1" in caplog.text
    assert not [text for text in shown if "proxy-pass" in text]
    # A server's error text quoting the URL back is redacted like the key.
    assert client.redact("upstream http://proxy-user:proxy-pass@host refused") == (
        "upstream http://proxy-user:[redacted]@host refused"
    )
