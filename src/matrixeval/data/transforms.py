"""Sentence-level text transforms for the sentence-operation experiments (Wei et al. 2024 Fig. 3; Matrix
Nuclear-Norm Fig. 3).

A rule-based sentence splitter (no model, no download) and five operations on a document's sentences, each
named for exactly what it does (the papers' "reverse" could mean either of the two reversals):

- ``base``: the sentences in their original order;
- ``shuffle``: the sentences in a random order (seeded per text), each sentence unchanged;
- ``reverse_order``: the sentences in reverse order, each sentence unchanged;
- ``reverse_words``: the sentences in their original order, the words inside each sentence in reverse order;
- ``shuffle_reverse_words``: the ``shuffle`` order (same seed, same order), then the words inside each sentence
  in reverse order.

Words are whitespace-separated and keep their punctuation (``"The cat sat."`` → ``"sat. cat The"``). Every
operation joins its sentences with single spaces, ``base`` included, so the variants of a text differ only in
order, never in whitespace or in the multiset of words. Shuffles are seeded with
``random.Random(f"{seed}:{text}")``: a text's permutation depends on the seed and the text alone, not on which
documents came before it or on PYTHONHASHSEED.
"""

from __future__ import annotations

import random
import re

from matrixeval.errors import MatrixEvalError

__all__ = [
    "SENTENCE_OPS",
    "apply_sentence_op",
    "check_sentence_ops",
    "reverse_order",
    "reverse_words",
    "shuffle_reverse_words",
    "shuffle_sentences",
    "split_sentences",
]

SENTENCE_OPS = ("base", "shuffle", "reverse_order", "reverse_words", "shuffle_reverse_words")
# Names that meant one reading or the other; refused with a pointer to the unambiguous ones.
_AMBIGUOUS = {
    "reverse": "reverse_order (sentences in reverse order) or reverse_words (words of each sentence reversed)",
    "shuffle_reverse": "shuffle_reverse_words (the shuffle, then the words of each sentence reversed)",
}

# Words that end in "." without ending a sentence; compared case-sensitively ("No. 5" but "said no. Then").
_ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Mx Dr Prof Sr Jr St Mt Ft Gen Gov Sen Rep Rev Hon Lt Col Capt Cmdr Sgt Maj Adm Pres Supt "
    "Inc Ltd Co Corp Bros Dept Univ Assn No Nos Fig Figs Eq Eqs Vol Vols Ch Chap Sec Ph.D "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec "
    "vs cf al approx ca viz resp esp incl".split()
)
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, i.e, a.m (the final "." is the candidate break)
_INITIAL = re.compile(r"[A-Z]")  # "J. K. Rowling"
# Sentence-final punctuation and any closing quotes/brackets (group 1), then whitespace: a candidate break.
_CANDIDATE = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)\s+")
_OPENERS = "\"'\u201c\u2018"


def split_sentences(text: str, *, hard_breaks: bool = False) -> list[str]:
    """Split text into sentences with rules, no model.

    A sentence ends at ``.``, ``!`` or ``?`` (runs like ``?!`` or ``...`` included, plus closing quotes or
    brackets) followed by whitespace and then a capital letter, a digit or an opening quote. A single ``.``
    does not end a sentence after a known abbreviation (``Mr.``, ``Dr.``, ``Fig.``, ``vs.``, ``et al.``), a
    dotted acronym (``U.S.``, ``e.g.``, ``i.e.``, ``p.m.``) or a one-letter initial (``J. Smith``); decimals
    (``3.14``) never split because no whitespace follows the dot. The price of these rules: a sentence that
    really ends in ``U.S.`` or an initial is merged with the next one.

    Sentences are stripped of surrounding whitespace and empty ones dropped, so joining them with single spaces
    reproduces ``text`` up to whitespace. With ``hard_breaks``, every line break also ends a sentence.

    Example:
        >>> split_sentences("Dr. Smith paid 3.50 dollars, i.e. Not much. Then he left! Why?")
        ['Dr. Smith paid 3.50 dollars, i.e. Not much.', 'Then he left!', 'Why?']
    """
    if hard_breaks:
        return [s for line in text.splitlines() for s in split_sentences(line)]
    sentences, start = [], 0
    for match in _CANDIDATE.finditer(text):
        if _is_break(text, match):
            sentences.append(text[start : match.end(1)].strip())
            start = match.end(1)
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def shuffle_sentences(text: str, seed: int | str, *, hard_breaks: bool = False) -> str:
    """The sentences of ``text`` in a random order drawn from ``random.Random(f"{seed}:{text}")``.

    With n sentences each of the n! orders is equally likely, the original order included.
    """
    return " ".join(_shuffled(text, seed, hard_breaks))


def reverse_order(text: str, *, hard_breaks: bool = False) -> str:
    """The sentences of ``text`` in reverse order, each sentence unchanged.

    Applying it twice gives back the ``base`` text whenever the reversed text splits into the same sentences,
    i.e. when every sentence ends in ``.``/``!``/``?`` and starts with a capital, digit or quote.
    """
    return " ".join(reversed(split_sentences(text, hard_breaks=hard_breaks)))


def reverse_words(text: str, *, hard_breaks: bool = False) -> str:
    """The sentences of ``text`` in their order, the whitespace-separated words of each in reverse order:
    ``"The cat sat. It left."`` becomes ``"sat. cat The left. It"``."""
    return " ".join(_reversed_words(s) for s in split_sentences(text, hard_breaks=hard_breaks))


def shuffle_reverse_words(text: str, seed: int | str, *, hard_breaks: bool = False) -> str:
    """The sentence order of :func:`shuffle_sentences` (same seed, same order), then the words of each sentence
    in reverse order, as :func:`reverse_words` does."""
    return " ".join(_reversed_words(s) for s in _shuffled(text, seed, hard_breaks))


def apply_sentence_op(text: str, op: str, seed: int | str = 0, *, hard_breaks: bool = False) -> str:
    """Apply one of :data:`SENTENCE_OPS` to ``text``; ``seed`` matters only for the shuffling ones.

    Raises:
        MatrixEvalError: for an unknown or ambiguous ``op``.
    """
    check_sentence_ops([op])
    if op == "base":
        return " ".join(split_sentences(text, hard_breaks=hard_breaks))
    if op == "shuffle":
        return shuffle_sentences(text, seed, hard_breaks=hard_breaks)
    if op == "reverse_order":
        return reverse_order(text, hard_breaks=hard_breaks)
    if op == "reverse_words":
        return reverse_words(text, hard_breaks=hard_breaks)
    return shuffle_reverse_words(text, seed, hard_breaks=hard_breaks)


def check_sentence_ops(ops) -> None:
    """Raise a one-line MatrixEvalError for the first name in `ops` that is not one of :data:`SENTENCE_OPS`."""
    for op in ops:
        if op in _AMBIGUOUS:
            raise MatrixEvalError(f"sentence operation {op!r} is ambiguous; use {_AMBIGUOUS[op]}")
        if op not in SENTENCE_OPS:
            raise MatrixEvalError(f"unknown sentence operation {op!r}; use some of: {', '.join(SENTENCE_OPS)}")


def _reversed_words(sentence: str) -> str:
    return " ".join(reversed(sentence.split()))


def _shuffled(text: str, seed: int | str, hard_breaks: bool) -> list[str]:
    sentences = split_sentences(text, hard_breaks=hard_breaks)
    random.Random(f"{seed}:{text}").shuffle(sentences)
    return sentences


def _is_break(text: str, match: re.Match) -> bool:
    """Whether a candidate (punctuation + closers, then whitespace) really ends a sentence."""
    following = text[match.end() : match.end() + 1]
    if not following or not (following.isupper() or following.isdigit() or following in _OPENERS):
        return False
    if match.group(1).rstrip("\"'\u201d\u2019)]") != ".":
        return True  # "!", "?", "...", "?!" always end a sentence here
    start = match.start()
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start : match.start()].lstrip("([" + _OPENERS)
    return not (word in _ABBREVIATIONS or _DOTTED.fullmatch(word) or _INITIAL.fullmatch(word))
