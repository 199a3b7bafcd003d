"""Splitting long answers for Discord, notes and thread names."""

import re

from bot.render import MESSAGE_LIMIT, count, plural, split_message, thread_name, with_notes


def fences_balanced(chunk: str) -> bool:
    return len(re.findall(r"^\s*```", chunk, flags=re.MULTILINE)) % 2 == 0


def test_short_text_is_one_message() -> None:
    assert split_message("hello") == ["hello"]


def test_blank_text_is_no_message() -> None:
    assert split_message("  \n ") == []


def test_long_prose_splits_on_line_boundaries_within_the_limit() -> None:
    lines = [f"line {i} " + "word " * 20 for i in range(100)]
    chunks = split_message("\n".join(lines))
    assert len(chunks) > 1
    assert all(len(chunk) <= MESSAGE_LIMIT for chunk in chunks)
    assert "\n".join(chunks).split("\n") == lines  # nothing lost, nothing cut mid-line


def test_code_block_cut_by_a_split_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})  # {'x' * 40}" for i in range(120))
    text = "Here you go:\n```python\n" + code + "\n```\nDone."
    chunks = split_message(text)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert len(chunk) <= MESSAGE_LIMIT
        assert fences_balanced(chunk)
    for chunk in chunks[1:-1]:
        assert chunk.startswith("```python\n")
    assert chunks[-1].endswith("Done.")


def test_4500_character_answer_with_code_arrives_balanced() -> None:
    text = "Intro\n```js\n" + "\n".join("console.log('" + "a" * 60 + "');" for _ in range(70)) + "\n```\nOutro"
    assert len(text) > 4500
    chunks = split_message(text)
    assert all(len(chunk) <= MESSAGE_LIMIT and fences_balanced(chunk) for chunk in chunks)


def test_a_line_longer_than_a_message_is_cut() -> None:
    text = "x" * 4500
    chunks = split_message(text)
    assert all(len(chunk) <= MESSAGE_LIMIT for chunk in chunks)
    assert "".join(chunks) == text


def test_notes_follow_the_answer_as_subtext() -> None:
    assert with_notes("Answer", ["Cut off."]) == "Answer\n\n-# Cut off."
    assert with_notes("", ["Nothing."]) == "-# Nothing."


def test_thread_name_uses_the_first_line_within_100_characters() -> None:
    assert thread_name("\n  **What** is <@123> up?\nsecond line") == "What is up?"
    assert len(thread_name("a" * 300)) == 100
    assert thread_name("```") == "Conversation"


def test_a_count_is_worded_for_its_number() -> None:
    assert count(1, "image") == "1 image"
    assert count(0, "image") == "0 images"
    assert count(1500, "token") == "1,500 tokens"
    assert count(1, "minute of audio", "minutes of audio") == "1 minute of audio"
    assert count(2.5, "minute of audio", "minutes of audio", spec=",.1f") == "2.5 minutes of audio"
    assert count(1.0, "minute", spec=",.1f") == "1.0 minutes"  # the noun follows the number as shown
    assert plural("1", "request") == "request" and plural(3, "request") == "requests"
