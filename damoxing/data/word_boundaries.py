"""Word boundaries for whole-word masking where the tokenizer cannot see words: Chinese, one character per token.

BERT's whole-word masking masks every WordPiece of a word together, and a `##` piece tells where a word goes on.
A Chinese tokenizer splits every character, so there are no `##` pieces; Chinese BERT-wwm (Cui et al., 2019)
takes the words from a segmenter instead. `continued_flags` marks, per token, whether it starts inside a word of
the segmenter (1) or at a word's start (0); the masked-LM collator then chooses and masks words, not characters.

    flags = continued_flags("jieba", tokenizer, ["使用语言模型来预测下一个词"])
    # jieba: 使用 / 语言 / 模型 / 来 / 预测 / 下 / 一个 / 词  ->  [[0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import ConfigError

WORD_SEGMENTERS = ("", "jieba")  # "": words from the tokenizer's own '##' pieces only


def jieba_word_starts(text: str) -> set[int]:
    """The character offsets where jieba's words begin (its default, precise mode with HMM for unknown words)."""
    import jieba  # imported when asked for: loading its dictionary takes a second

    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict..." chatter on every run
    return {start for _, start, _ in jieba.tokenize(text)}


def continued_flags(segmenter: str, tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Per text, per token (no special tokens): 1 if the token begins inside a word of `segmenter`, else 0.

    A token that begins where a word begins starts a word (jieba covers every character, spaces included).
    The tokenizer's offsets map tokens back to characters of the original text (its normaliser may add spaces
    around Chinese characters or lowercase, which moves nothing)."""
    if segmenter not in WORD_SEGMENTERS[1:]:
        raise ConfigError(f"data.word_segmenter: choose one of {', '.join(WORD_SEGMENTERS[1:])}, not {segmenter!r}")
    encodings = tokenizer.backend.encode_batch(list(texts), add_special_tokens=False)
    flags = []
    for text, encoding in zip(texts, encodings):
        starts = jieba_word_starts(text)
        flags.append([int(begin not in starts) for begin, _ in encoding.offsets])
    return flags
