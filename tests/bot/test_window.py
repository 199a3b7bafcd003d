"""The context window: newest turns within the budget, speakers named, nothing from elsewhere."""

from bot.store import Turn
from bot.tokens import TokenCounter, estimate_tokens
from bot.window import build_window, turn_to_message


def turn(role: str, text: str, author_id: int | None = 7, name: str = "Ann", spoken: bool = False) -> Turn:
    return Turn(role=role, author_id=author_id, author_name=name, content=text, spoken=spoken)  # type: ignore[arg-type]


def test_user_turns_say_who_spoke_with_a_valid_name_field() -> None:
    message = turn_to_message(turn("user", "hi", author_id=123, name="Zoë 🌟"), lambda user_id: f"user_x{user_id}")
    assert message.to_json() == {"role": "user", "content": "Zoë 🌟: hi", "name": "user_x123"}
    assert "name" not in turn_to_message(turn("user", "hi", author_id=123)).to_json()  # for counting only


def test_spoken_turns_are_marked() -> None:
    assert turn_to_message(turn("user", "hello", spoken=True)).content == "Ann (voice message): hello"


def test_all_turns_fit_a_large_budget_in_order() -> None:
    turns = [turn("user", "q1"), turn("assistant", "a1"), turn("user", "q2")]
    window = build_window(turns, "sys", 10_000, TokenCounter(), more_in_store=False)
    assert [m.role for m in window.messages] == ["system", "user", "assistant", "user"]
    assert window.messages[-1].content == "Ann: q2"
    assert not window.omitted_older


def test_oldest_turns_are_left_out_when_over_budget() -> None:
    turns = [turn("user", f"message {i} " + "x" * 300) for i in range(10)]
    budget = 3 * (estimate_tokens(turns[0].content) + 10)
    window = build_window(turns, "sys", budget, TokenCounter(), more_in_store=False)
    kept = [m.content for m in window.messages[1:]]
    assert 0 < len(kept) < 10
    assert kept[-1].startswith("Ann: message 9")
    assert window.omitted_older


def test_the_newest_turn_goes_even_when_it_alone_is_over_budget() -> None:
    window = build_window([turn("user", "y" * 10_000)], "sys", 100, TokenCounter(), more_in_store=False)
    assert len(window.messages) == 2


def test_turns_beyond_the_read_limit_count_as_omitted() -> None:
    window = build_window([turn("user", "q")], "sys", 10_000, TokenCounter(), more_in_store=True)
    assert window.omitted_older
