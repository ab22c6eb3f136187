"""Counts in words, for lines a person reads: "1 file", "2 files"."""

from __future__ import annotations


def count(number: int, noun: str, plural: str = "") -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
