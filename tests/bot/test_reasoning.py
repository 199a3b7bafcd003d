"""ThinkFilter: <think> sections never reach the visible answer, however a stream splits them."""

from __future__ import annotations

import itertools

import pytest

from bot.reasoning import ThinkFilter

THOUGHT = "<think>x</think>answer"


def run(chunks: list[str]) -> tuple[str, ThinkFilter]:
    """The visible text a filter returns for the chunks, and the filter."""
    think = ThinkFilter()
    visible = "".join(think.feed(chunk) for chunk in chunks)
    return visible + think.finish(), think


def splits(text: str, cuts: int) -> list[list[str]]:
    """Every way of cutting `text` into `cuts + 1` pieces (empty pieces included)."""
    return [
        [text[start:end] for start, end in itertools.pairwise((0, *points, len(text)))]
        for points in itertools.combinations_with_replacement(range(len(text) + 1), cuts)
    ]


@pytest.mark.parametrize("cuts", [1, 2])
def test_every_split_of_a_think_section_shows_only_the_answer(cuts: int) -> None:
    for chunks in splits(THOUGHT, cuts):
        visible, think = run(chunks)
        assert visible == "answer", chunks
        assert think.saw_reasoning


def test_one_character_at_a_time_shows_only_the_answer() -> None:
    assert run(list("<think>\nThe user greets me.\n</think>\n\nHello!"))[0] == "Hello!"


def test_the_answer_streams_as_it_comes_once_the_section_is_closed() -> None:
    think = ThinkFilter()
    assert think.feed("<think>plan</think>") == ""
    assert think.feed("Hel") == "Hel"
    assert think.feed("lo") == "lo"
    assert think.finish() == ""


def test_a_section_in_the_middle_on_its_own_line_is_left_out() -> None:
    for chunks in splits("Intro.\n<think>hmm</think>\nMore.", 1):
        assert run(chunks)[0] == "Intro.\n\nMore.", chunks


def test_an_unclosed_section_at_the_end_is_dropped() -> None:
    visible, think = run(["<think>I was cut off by the tok", "en limit"])
    assert visible == ""
    assert think.saw_reasoning


def test_an_unclosed_section_after_an_answer_keeps_the_answer() -> None:
    assert run(["Done.\n<thi", "nk>second thoughts"])[0] == "Done.\n"


@pytest.mark.parametrize(
    "text",
    [
        "a < b and b > c",
        "Wrap it in `<think>` tags.",
        "The tag <think> opens a section.",
        "x <thinking> is another tag",
        "  indented start\n\n\tand tabs",
        "ends with <",
        "ends with <thi",
        "</think> alone is not a section",
        "<",
        " ",
        "",
    ],
)
def test_text_without_a_section_comes_through_unchanged_however_split(text: str) -> None:
    for chunks in splits(text, 2):
        visible, think = run(chunks)
        assert visible == text, chunks
        assert not think.saw_reasoning


def test_a_possible_tag_is_held_back_only_until_it_is_decided() -> None:
    think = ThinkFilter()
    assert think.feed("Note:\n<th") == "Note:\n"
    assert think.feed("is is fine") == "<this is fine"


def test_text_that_looks_like_a_tag_start_arrives_at_finish() -> None:
    think = ThinkFilter()
    assert think.feed("<thin") == ""
    assert think.finish() == "<thin"


def test_two_sections_are_both_left_out() -> None:
    assert run(["<think>a</think>One.\n<think>b</think>\nTwo."])[0] == "One.\n\nTwo."
