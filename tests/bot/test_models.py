"""Model name patterns: which models see pictures or reason, as the owner lists them."""

from __future__ import annotations

import pytest

from bot.models import DEFAULT_REASONING_MODELS, DEFAULT_VISION_MODELS, model_matches, parse_patterns


@pytest.mark.parametrize(
    ("model", "sees"),
    [
        ("gpt-4o", True),
        ("gpt-4o-mini-2024-07-18", True),
        ("GPT-4.1-mini", True),  # case does not matter
        ("gpt-5", True),
        ("o3-mini", True),
        ("openai/gpt-4o", True),  # a router's provider prefix
        ("gpt-3.5-turbo", False),
        ("gpt-4", False),
        ("llama-3.1-8b-instant", False),
        ("meta-llama/Llama-3.1-8B:free", False),
        ("foo-gpt-4o", False),  # patterns match the whole name, not a part of it
    ],
)
def test_default_vision_patterns(model: str, sees: bool) -> None:
    assert model_matches(model, DEFAULT_VISION_MODELS) is sees


REASONING_CASES = [("gpt-5-mini", True), ("o1", True), ("o4-mini", True), ("gpt-4.1", False)]


@pytest.mark.parametrize(("model", "reasons"), REASONING_CASES)
def test_reasoning_defaults_name_the_gpt_5_family_and_the_o_series(model: str, reasons: bool) -> None:
    assert model_matches(model, DEFAULT_REASONING_MODELS) is reasons


def test_patterns_parse_from_a_comma_separated_setting() -> None:
    patterns = parse_patterns(" qwen2.5-vl*, ,llava-[0-9]*,")
    assert patterns == ("qwen2.5-vl*", "llava-[0-9]*")
    assert model_matches("Qwen2.5-VL-7B-Instruct", patterns)
    assert model_matches("llava-1.6", patterns) and not model_matches("llava-next", patterns)


def test_no_patterns_match_nothing() -> None:
    assert not model_matches("gpt-4o", ())
    assert not model_matches("gpt-4o", parse_patterns(""))
