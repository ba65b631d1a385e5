from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matrixeval.data.transforms import (
    SENTENCE_OPS,
    apply_sentence_op,
    reverse_order,
    reverse_words,
    shuffle_reverse_words,
    shuffle_sentences,
    split_sentences,
)
from matrixeval.errors import MatrixEvalError

SENTENCES = [
    "Mr. Smith met Dr. Jones at 3.30 p.m. on Monday.",
    "They compared pi, i.e. 3.14159, with e.g. The Book of Numbers.",
    "The U.S. Army paid $2.5 million!",
    "Was it worth it?",
    "\"Certainly,\" said J. K. Rowling.",
    "Fig. 3 shows the results of Wei et al. (2024) vs. ours.",
    "9 out of 10 agreed.",
]
TEXT = " ".join(SENTENCES)


def words(text):
    return text.split()


# Well-formed sentences: a capitalised first word, lowercase words (some abbreviations, decimals), an end mark.
_word = st.sampled_from(["cat", "sat", "mat", "e.g.", "Dr.", "3.14", "U.S.", "vs.", "it", "the", "x"])
_sentence = st.builds(
    lambda first, rest, end: " ".join([first, *rest]) + end,
    st.sampled_from(["The", "Dogs", "42", "Mr. Smith", "\"Yes"]),  # not a lone capital: "A." reads as an initial
    st.lists(_word, max_size=6),
    st.sampled_from([".", "!", "?", "?!", "...", ".\""]),
)
sentence_lists = st.lists(_sentence, min_size=1, max_size=8)


def test_abbreviations_decimals_and_initials_are_not_split():
    assert split_sentences(TEXT) == SENTENCES


def test_split_examples():
    assert split_sentences("") == []
    assert split_sentences("   \n ") == []
    assert split_sentences("no final mark") == ["no final mark"]
    assert split_sentences("It ended. then it went on.") == ["It ended. then it went on."]  # lowercase: no break
    assert split_sentences("Go!  Now?\n\nYes.") == ["Go!", "Now?", "Yes."]
    text = "Wait... What? (Really.) 'Quoted.' End"
    assert split_sentences(text) == ["Wait...", "What? (Really.)", "'Quoted.'", "End"]


def test_hard_breaks_end_sentences_at_line_breaks():
    text = " = Heading = \nFirst line. Second line\nThird"
    assert split_sentences(text) == ["= Heading = \nFirst line.", "Second line\nThird"]
    assert split_sentences(text, hard_breaks=True) == ["= Heading =", "First line.", "Second line", "Third"]


@given(st.text(alphabet="aB3 .!?\"'\n\tM.r", max_size=80))
def test_joining_sentences_reproduces_text_up_to_whitespace(text):
    sentences = split_sentences(text)
    assert " ".join(sentences).split() == text.split()
    assert all(s and s == s.strip() for s in sentences)


@given(sentence_lists)
def test_well_formed_sentences_split_back_exactly(sentences):
    assert split_sentences(" ".join(sentences)) == sentences


@given(sentence_lists, st.integers(0, 1000))
def test_every_op_preserves_the_multiset_of_sentences(sentences, seed):
    text = " ".join(sentences)
    flipped = [" ".join(reversed(s.split())) for s in sentences]  # each sentence's words, right to left
    assert split_sentences(apply_sentence_op(text, "base")) == sentences
    assert Counter(split_sentences(shuffle_sentences(text, seed))) == Counter(sentences)
    assert split_sentences(reverse_order(text)) == sentences[::-1]
    assert reverse_words(text) == " ".join(flipped)
    # shuffle_reverse_words: the shuffle's sentences, each with its words reversed (so the words are preserved too).
    if len(set(sentences)) == len(sentences):  # the shuffle's order, recovered by sentence identity
        order = [sentences.index(s) for s in split_sentences(shuffle_sentences(text, seed))]
        assert shuffle_reverse_words(text, seed) == " ".join(flipped[i] for i in order)
    for op in SENTENCE_OPS:
        assert Counter(words(apply_sentence_op(text, op, seed))) == Counter(words(text))


@given(sentence_lists)
def test_reverse_twice_is_identity(sentences):
    text = " ".join(sentences)
    assert reverse_order(reverse_order(text)) == text
    # every word reversed = the sentence order reversed with each sentence's words reversed
    assert reverse_words(reverse_order(text)) == " ".join(reversed(text.split()))


def test_same_seed_same_result_different_seed_different_order():
    assert shuffle_sentences(TEXT, 0) == shuffle_sentences(TEXT, 0)
    assert shuffle_reverse_words(TEXT, "run-1") == shuffle_reverse_words(TEXT, "run-1")
    assert shuffle_sentences(TEXT, 0) != shuffle_sentences(TEXT, 1)
    assert len({shuffle_sentences(TEXT, seed) for seed in range(20)}) > 15


def test_shuffle_depends_on_the_text_not_on_call_order():
    other = "Another text. With two sentences."
    first = shuffle_sentences(TEXT, 7)
    shuffle_sentences(other, 7)
    assert shuffle_sentences(TEXT, 7) == first


def test_examples_written_out_by_hand():
    text = "The cat sat. It left!"
    assert reverse_order(text) == "It left! The cat sat."
    assert reverse_words(text) == "sat. cat The left! It"
    assert shuffle_reverse_words("The cat sat.", 0) == "sat. cat The"
    assert reverse_order("One. Two. Three.") == "Three. Two. One."


def test_apply_sentence_op_dispatches():
    assert SENTENCE_OPS == ("base", "shuffle", "reverse_order", "reverse_words", "shuffle_reverse_words")
    assert apply_sentence_op(TEXT, "base") == TEXT
    assert apply_sentence_op(TEXT, "shuffle", 3) == shuffle_sentences(TEXT, 3)
    assert apply_sentence_op(TEXT, "reverse_order") == reverse_order(TEXT)
    assert apply_sentence_op(TEXT, "reverse_words") == reverse_words(TEXT)
    assert apply_sentence_op(TEXT, "shuffle_reverse_words", 3) == shuffle_reverse_words(TEXT, 3)
    assert apply_sentence_op("One. Two.\nthree", "reverse_order", hard_breaks=True) == "three Two. One."
    assert apply_sentence_op("One two.\nthree four", "reverse_words", hard_breaks=True) == "two. One four three"


def test_unknown_and_ambiguous_ops_are_refused():
    valid = "base, shuffle, reverse_order, reverse_words, shuffle_reverse_words"
    with pytest.raises(MatrixEvalError, match=f"unknown sentence operation 'sort'; use some of: {valid}"):
        apply_sentence_op(TEXT, "sort")
    with pytest.raises(MatrixEvalError, match="'reverse' is ambiguous; use reverse_order .* or reverse_words"):
        apply_sentence_op(TEXT, "reverse")
    with pytest.raises(MatrixEvalError, match="'shuffle_reverse' is ambiguous; use shuffle_reverse_words"):
        apply_sentence_op(TEXT, "shuffle_reverse", 1)
