"""lm-evaluation-harness's document-level wikitext: its detokeniser, and the page whose words and bytes it counts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .fields import MissingField

__all__ = ["wikitext_detokenizer", "wikitext_page", "wikitext_text"]


def wikitext_page(record: Mapping[str, Any]) -> str:
    """The article as stored: the hub data set's ``page``, or ``text`` for a .txt file read with
    ``--txt_split wikitext`` (one record per ``= Title =`` article)."""
    for key in ("page", "text"):
        if isinstance(record.get(key), str):
            return record[key]
    raise MissingField("'page' or 'text'")


def wikitext_text(record: Mapping[str, Any]) -> str:
    """The text lm-eval's wikitext task scores: the page, detokenised."""
    return wikitext_detokenizer({"page": wikitext_page(record)})


# Copied verbatim from lm-evaluation-harness 0.4.13, lm_eval/tasks/wikitext/preprocess_wikitext.py
# (wikitext_detokenizer), so the scored text is byte for byte lm-eval's.
def wikitext_detokenizer(doc):
    string = doc["page"]
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")

    return string
