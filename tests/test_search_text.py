"""The search's folding (models/search_text.fold): folding a text a space-separated piece at a
time, as the writers do, gives what folding it whole gives, for the characters whose
decomposition, case folding or composition is the hardest to cut: combining marks after a
space, Greek ypogegrammeni, Hangul jamo, Oriya vowel signs that compose with a starter, the
Turkish dotted I, sharp s, final sigma, U+0000."""

import random
import unicodedata

from sessiongraph.models.search_text import fold, sql_holds_terms, sql_trigram_query

HARD = list("aiIİıσςΣßẞ eEοΟ连て\x00\u0301\u0307\u0308\u0345\u3099") + [
    "\u1fb3", "\u0390", "\u1e9e", "\u212b", "\u00c5", "\u0b47", "\u0b3e", "\u1100", "\u1161", "\u11a8", "  ",
] + [chr(c) for c in range(0x300, 0x370)]


def whole(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text).casefold().replace("i\u0307", "i")
    return unicodedata.normalize("NFC", decomposed).replace("\x00", "\ufffd")


def test_folding_piece_by_piece_is_folding_the_text_whole():
    rng = random.Random(18)
    for _ in range(20_000):
        text = "".join(rng.choice(HARD) for _ in range(rng.randint(1, 16)))
        assert fold(text) == whole(text), repr(text)


def test_the_index_query_asks_for_every_trigram_and_the_check_for_every_term():
    assert sql_trigram_query("abcd", 'x"y') == '"abc" AND "bcd" AND "x""y"'
    assert sql_holds_terms("Die STRASSE".encode(), "strasse", "die")
    assert not sql_holds_terms("Die STRASSE".encode(), "straße")  # terms come folded
    assert not sql_holds_terms(None, "abc")
