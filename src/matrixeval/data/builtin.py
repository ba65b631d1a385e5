"""Offline records built into the package (no network, no files)."""

from __future__ import annotations

import re

__all__ = ["MIN_WORDS", "pydoc_topic_records"]

MIN_WORDS = 40  # a paragraph shorter than this gives too few tokens for a useful spectrum

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def pydoc_topic_records(min_words: int = MIN_WORDS) -> list[dict[str, object]]:
    """Paragraphs of Python's own help topics (`pydoc_data.topics`), sorted by topic, whitespace-normalised.

    Each record is {"topic", "paragraph" (index within the topic), "text"}; paragraphs are split on blank
    lines and kept when they have at least `min_words` words.
    """
    from pydoc_data.topics import topics

    records = []
    for topic in sorted(topics):
        for i, paragraph in enumerate(_BLANK_LINE.split(topics[topic])):
            words = paragraph.split()
            if len(words) >= min_words:
                records.append({"topic": topic, "paragraph": i, "text": " ".join(words)})
    return records
