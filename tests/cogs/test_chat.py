"""The chat cog's pure helpers: the model choices autocomplete offers."""

from cogs.chat import MAX_CHOICES, model_choices


def test_model_choices_match_what_was_typed_in_any_case_and_stop_at_discords_limit() -> None:
    models = ["gpt-5-mini", "GPT-4.1", "o3", *(f"local-{n}" for n in range(40))]
    assert [choice.value for choice in model_choices(models, " gpt ")] == ["gpt-5-mini", "GPT-4.1"]
    assert len(model_choices(models, "")) == MAX_CHOICES == 25
    assert model_choices(models, "nothing like it") == []
