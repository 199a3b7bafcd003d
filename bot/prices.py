"""The PRICES table: what each model costs, for /usage's estimates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.env_reader import EnvReader

# The keys of one model's entry in PRICES, and what each is priced per.
PRICE_KEYS = {
    "input": "1M input tokens",
    "output": "1M output tokens",
    "image": "image (a number, or an object of size → price)",
    "audio_minute": "minute of audio",
    "speech_characters": "1M characters of speech",
}
PRICES_EXAMPLE = '{"gpt-5-mini": {"input": 0.25, "output": 2.0}, "gpt-image-2": {"image": 0.04}}'


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in the currency of the price table (USD for OpenAI's published prices)."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    per_image: float | None = None
    per_image_by_size: Mapping[str, float] = field(default_factory=dict)
    per_audio_minute: float = 0.0
    per_million_speech_characters: float = 0.0

    def image_price(self, size: str | None) -> float | None:
        """The price of one image of `size`, or None when the table does not say."""
        if size is not None and size in self.per_image_by_size:
            return self.per_image_by_size[size]
        return self.per_image


def read_prices(reader: EnvReader, name: str) -> dict[str, ModelPrice]:
    """The price table: a JSON object, or the path of a JSON file holding one."""
    raw = reader.env.get(name, "").strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        source = raw
    else:
        try:
            # utf-8-sig: editors on Windows often save JSON with a byte-order mark.
            source = Path(raw).read_text(encoding="utf-8-sig")
        except OSError as error:
            reader.problem(f"{name} must be a JSON object or the path of a JSON file; {raw!r}: {error.strerror}.")
            return {}
        except UnicodeError:
            reader.problem(f"{name}: the file {raw!r} is not UTF-8 text. Save it as UTF-8 JSON.")
            return {}
    try:
        table = json.loads(source)
    except ValueError as error:
        reader.problem(f"{name} is not valid JSON ({error}).")
        return {}
    if not isinstance(table, dict):
        reader.problem(f"{name} must be a JSON object of model name → prices, such as {PRICES_EXAMPLE}.")
        return {}
    prices = {}
    for model, entry in table.items():
        price = _model_price(reader, name, str(model), entry)
        if price is not None:
            prices[str(model)] = price
    return prices


def _model_price(reader: EnvReader, name: str, model: str, entry: Any) -> ModelPrice | None:
    if not isinstance(entry, dict) or not entry:
        reader.problem(f"{name}: the entry for {model!r} must be an object with some of: {', '.join(PRICE_KEYS)}.")
        return None
    bad_keys = [key for key in entry if key not in PRICE_KEYS]
    if bad_keys:
        known = "; ".join(f"{key}: per {unit}" for key, unit in PRICE_KEYS.items())
        reader.problem(f"{name}: {model!r} has unknown keys {', '.join(map(repr, bad_keys))} (known ones: {known}).")
        return None
    image = entry.get("image")
    by_size = image if isinstance(image, dict) else {}
    numbers = {key: value for key, value in entry.items() if key != "image" or not by_size}
    numbers |= {f"image {size}": value for size, value in by_size.items()}
    bad_values = [key for key, value in numbers.items() if not _is_price(value)]
    if bad_values:
        reader.problem(f"{name}: in {model!r}, {', '.join(bad_values)} must be a number at least 0.")
        return None
    return ModelPrice(
        input_per_million=float(entry.get("input", 0)),
        output_per_million=float(entry.get("output", 0)),
        per_image=None if by_size or image is None else float(image),
        per_image_by_size={str(size): float(value) for size, value in by_size.items()},
        per_audio_minute=float(entry.get("audio_minute", 0)),
        per_million_speech_characters=float(entry.get("speech_characters", 0)),
    )


def _is_price(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
