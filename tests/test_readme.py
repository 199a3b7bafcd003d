"""The README as a reader sees it: rendered as CommonMark with tables (as GitHub and PyPI do), every table whole.

A blank line inside a table ends it; the rows after it then show as raw `| … |` text. These tests
render the file and compare what became table rows with the `|` lines in the source.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from discord import app_commands
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot import __main__ as entry_point
from bot import doctor
from bot.bot import EXTENSIONS, Bot
from bot.config import Settings

README = Path(__file__).parents[1] / "README.md"


def rendered() -> tuple[list[str], list[Token]]:
    """The README's lines and its CommonMark (+ tables) tokens."""
    text = README.read_text(encoding="utf-8")
    return text.splitlines(), MarkdownIt("commonmark").enable("table").parse(text)


def table_lines() -> list[int]:
    """Indices of the source lines that are table rows: they start with `|`, outside code blocks."""
    lines, tokens = rendered()
    in_code = {
        index for token in tokens if token.type in ("fence", "code_block") and token.map for index in range(*token.map)
    }
    return [index for index, line in enumerate(lines) if line.startswith("|") and index not in in_code]


def tables() -> list[tuple[range, int, list[list[str]]]]:
    """Each rendered table: its source lines, its number of rows (header included) and each row's cells."""
    _, tokens = rendered()
    found = []
    for start, token in enumerate(tokens):
        if token.type != "table_open" or token.map is None:
            continue
        end = next(index for index in range(start, len(tokens)) if tokens[index].type == "table_close")
        rows: list[list[str]] = []
        for inner in tokens[start:end]:
            if inner.type == "tr_open":
                rows.append([])
            elif inner.type == "inline" and rows:
                rows[-1].append(inner.content)
        found.append((range(*token.map), len(rows), rows))
    return found


def test_every_table_row_in_the_source_is_rendered_as_a_table_row() -> None:
    rows = table_lines()
    covered = {index for lines, _, _ in tables() for index in lines}
    assert [index + 1 for index in rows if index not in covered] == [], "rows rendered as text (line numbers)"
    for lines, row_count, _ in tables():
        source_rows = [index for index in rows if index in lines]
        assert row_count == len(source_rows) - 1, f"table at line {lines.start + 1}"  # minus the --- line


def test_no_table_row_shows_as_raw_text() -> None:
    lines, tokens = rendered()
    paragraphs = [token for token in tokens if token.type == "paragraph_open" and token.map]
    raw = [start + 1 for token in paragraphs for start in range(*token.map) if lines[start].startswith("|")]
    assert raw == []


def test_every_row_has_as_many_cells_as_its_header() -> None:
    lines, _ = rendered()
    for table_range, _, _ in tables():
        header_cells = cell_count(lines[table_range.start])
        for index in table_range:
            assert cell_count(lines[index]) == header_cells, f"line {index + 1}: {lines[index]}"


def cell_count(line: str) -> int:
    """Cells of a GFM table row; `\\|` is a pipe inside a cell."""
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def table_after(heading: str) -> list[list[str]]:
    """The cells of the first table after a line of the README, header row first."""
    lines, _ = rendered()
    start = lines.index(heading)
    return next(rows for table_range, _, rows in tables() if table_range.start > start)


def commands_table() -> list[str]:
    """The first cell of each row of the README's Commands table."""
    cells = table_after("## Commands")
    assert cells[0][0] == "Command"
    return [row[0] for row in cells[1:]]


def test_every_exit_code_is_documented() -> None:
    rows = table_after("Exit codes, for scripts and service managers:")
    assert rows[0] == ["Code", "`python -m bot`", "`python -m bot doctor`"]
    documented_bot = {int(row[0]) for row in rows[1:] if row[1] != "—"}
    documented_doctor = {int(row[0]) for row in rows[1:] if row[2] != "—"}
    bot_codes = {getattr(entry_point, name) for name in dir(entry_point) if name.startswith("EXIT_")}
    doctor_codes = {getattr(doctor, name) for name in dir(doctor) if name.startswith("EXIT_")}
    assert documented_bot == bot_codes
    assert documented_doctor == doctor_codes


def documented_name(cell: str) -> str:
    """`/image generate prompt:<text> [size]` → `/image generate`; **Transcribe** → `Transcribe`."""
    if cell.startswith("**"):
        return cell.split("**")[1]
    words = cell.strip("`").split("`")[0].split()
    name = list(itertools.takewhile(lambda word: re.fullmatch(r"/?[\w-]+", word), words))
    return " ".join(name)


@pytest.fixture
async def registered(tmp_path: Path) -> set[str]:
    """Every command the bot registers with Discord, as a user types or sees it."""
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "token", "OPENAI_API_KEY": "sk-key", "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    )
    async with Bot(settings) as bot:  # set up as start() would, closed afterwards
        await bot.open_services()
        for extension in EXTENSIONS:
            await bot.load_extension(extension)
        names = set()
        for command in bot.tree.get_commands():
            if isinstance(command, app_commands.Group):
                names |= {f"/{sub.qualified_name}" for sub in command.walk_commands() if not hasattr(sub, "commands")}
            elif isinstance(command, app_commands.Command):
                names.add(f"/{command.qualified_name}")
            else:
                names.add(command.name)  # a context menu: its name as the Apps menu shows it
        return names


def test_the_commands_table_lists_every_registered_command_once(registered: set[str]) -> None:
    documented = [documented_name(cell) for cell in commands_table()]
    assert len(documented) == len(set(documented))
    assert set(documented) == registered
