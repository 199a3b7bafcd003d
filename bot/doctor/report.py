"""The doctor's findings as it prints them: never a key or a token."""

from __future__ import annotations

from typing import TextIO


class Report:
    """Prints findings as they come and counts the problems; never prints a key or a token."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.problems = 0

    def _print(self, text: str) -> None:
        # Flushed line by line: the checks wait on the network, and output held in a pipe's buffer
        # (docker compose run, a CI log) would make the doctor look stuck.
        print(text, file=self._out, flush=True)

    def section(self, title: str) -> None:
        """Start a group of findings."""
        self._print(f"\n{title}")

    def ok(self, text: str) -> None:
        """Something that is as it should be."""
        self._print(f"  ✓ {text}")

    def waiting(self, text: str) -> None:
        """What is being checked, said before a wait that may be long."""
        self._print(f"  … {text}")

    def line(self, text: str) -> None:
        """A line of its own, such as the invite link."""
        self._print(text)

    def note(self, text: str) -> None:
        """Worth knowing, but not a problem."""
        self._print(f"  • {text}")

    def problem(self, text: str, fix: str) -> None:
        """Something to fix, with how."""
        self.problems += 1
        self._print(f"  ✗ {text}\n    Fix: {fix}")
