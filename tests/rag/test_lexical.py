"""The lexical side: words in most chunks are left out of large tables'
queries, and the counts follow removals."""

from __future__ import annotations

from tidal.rag import lexical
from tidal.rag.lexical import Lexical


def test_common_words_are_left_out_of_queries_in_a_large_table() -> None:
    lex = Lexical()
    n = lexical.PRUNE_FROM
    lex.put_many([(i, f"common filler{i % 7} unique{i}") for i in range(n)])
    assert lex.query_words("Common unique42") == ["unique42"]
    assert [slot for slot, _ in lex.search("common unique42", 5)] == [42]
    assert lex.search("common", 5) == []  # only common words: the vector side answers
    for i in range(n // 2):
        lex.remove(i, f"common filler{i % 7} unique{i}")
    assert lex.df["common"] == n - n // 2 and lex.rows == n - n // 2
    assert lex.query_words("common") == ["common"]  # below PRUNE_FROM chunks every word is searched again
    lex.remove(n - 1, f"common filler{(n - 1) % 7} unique{n - 1}")
    lex.close()


def test_small_tables_search_every_word() -> None:
    lex = Lexical()
    lex.put_many([(i, f"common word{i}") for i in range(10)])
    assert lex.query_words("common word3") == ["common", "word3"]
    assert lex.search("common word3", 1)[0][0] == 3
    lex.close()
