"""Sentence splitting, English and Chinese."""

import pytest

from damoxing.data import split_sentences

CASES = [
    (
        "Mr. Smith went to Washington. He arrived at 3.30 p.m. on Monday.",
        ["Mr. Smith went to Washington.", "He arrived at 3.30 p.m. on Monday."],
    ),
    (
        'He said "Stop!" and left. "Go!" She ran... Then U.S. troops came.',
        ['He said "Stop!" and left.', '"Go!"', "She ran...", "Then U.S. troops came."],
    ),
    (
        "Is it? yes, it is. Pi is 3.14159! J. R. R. Tolkien wrote it.",
        ["Is it? yes, it is.", "Pi is 3.14159!", "J. R. R. Tolkien wrote it."],
    ),
    ("Clause one; clause two. Next", ["Clause one; clause two.", "Next"]),
    ("今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
    ("他说：“你好！”然后走了……好吧；再见", ["他说：“你好！”", "然后走了……", "好吧；", "再见"]),
    ("今天天气很好!我们去公园吧?好;再见", ["今天天气很好!", "我们去公园吧?", "好;", "再见"]),
    ("我喜欢Python。It is fun. 真的", ["我喜欢Python。", "It is fun.", "真的"]),
    ("Title without stop\n\nNext paragraph here", ["Title without stop", "Next paragraph here"]),
    ("", []),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected
