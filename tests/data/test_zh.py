"""Chinese: the corpus reader, a one-character-per-token WordPiece, and whole-word masking with jieba's words."""

import jieba
import pytest
import torch

from damoxing.config import from_dict
from damoxing.data.bundled import bundled_path
from damoxing.data.readers import read_records
from damoxing.data.zh_corpus import bundled_reviews, read_zh_corpus, strip_annotations, write_zh_corpus
from damoxing.errors import ConfigError
from damoxing.recipes.pretrain import train_tokenizer
from damoxing.tasks import get_task
from damoxing.training.config import RunConfig, TokenizerConfig

SENTENCES = [
    "这家酒店的服务非常好，房间干净整洁。",
    "我们明天去北京大学参观图书馆！",
    "使用语言模型来预测下一个词。",
    "价格便宜，交通方便，早餐也很丰富。",
    "屏幕色彩一般，电池续航时间太短了？",
    "中华人民共和国成立于一九四九年。",
]


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    """A WordPiece trained as `tokenizer: {train: true, kind: wordpiece}` does, on the bundled reviews."""
    folder = tmp_path_factory.mktemp("zh")
    corpus = folder / "corpus.txt"
    texts = [r["text"] for r in read_records(str(bundled_path("zh_sentiment", "train")))]
    corpus.write_text("\n".join(texts + SENTENCES), encoding="utf-8")
    return train_tokenizer(TokenizerConfig(train=True, kind="wordpiece", vocab_size=6000), [corpus])


def test_tokenizer_splits_one_character_per_token_and_keeps_chinese_punctuation(zh_tokenizer):
    text = "房间干净。服务好！值得吗？价格、位置：不错；“总体”（满意），"
    ids = zh_tokenizer.encode(text, add_special_tokens=False)
    assert [zh_tokenizer.id_to_token(i) for i in ids] == list(text)  # every character, punctuation too
    assert zh_tokenizer.unk_id not in ids
    for mark in "。！？，":
        assert zh_tokenizer.encode(mark, add_special_tokens=False) == [zh_tokenizer.token_to_id(mark)]


def run_config(tmp_path, **data) -> RunConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    section = {"train": [str(corpus)], "seq_len": 64, "mask_prob": 0.15, **data}
    return from_dict(RunConfig, {"model": {"preset": "bert-tiny"}, "data": section, "train": {"task": "masked_lm"}})


def jieba_word_of_each_token(tok, text: str) -> list[int]:
    """Independently of the library: the index of the jieba word each token of `text` begins in."""
    spans = [(start, end) for _, start, end in jieba.tokenize(text)]
    offsets = tok.backend.encode(text, add_special_tokens=False).offsets
    return [next(w for w, (s, e) in enumerate(spans) if s <= begin < e) for begin, _ in offsets]


def chosen_rows(tok, run, draws: int) -> list[tuple[int, list[bool]]]:
    """(sentence, per-token chosen flags) for `draws` maskings of every sentence (one chunk each)."""
    examples, collate = get_task("masked_lm").prepare(tok, SENTENCES, run)
    assert len(examples) == len(SENTENCES)  # each one-sentence document is one chunk
    rows = []
    for d in range(draws):
        generators = [torch.Generator().manual_seed(1000 * d + i) for i in examples]
        batch = collate(examples, generators)
        for i in examples:
            n = int(batch["attention_mask"][i].sum())
            rows.append((i, (batch["labels"][i, 1 : n - 1] != -100).tolist()))  # without [CLS] and [SEP]
    return rows


def test_whole_word_masking_with_jieba_masks_all_characters_of_a_word_together(zh_tokenizer, tmp_path):
    words = [jieba_word_of_each_token(zh_tokenizer, s) for s in SENTENCES]
    assert max(max(w.count(x) for x in w) for w in words) >= 4  # 中华人民共和国, 图书馆, ...: multi-character words

    def split_words(run) -> tuple[int, int]:
        """(words chosen in part, multi-character words chosen whole)."""
        part = whole = 0
        for i, chosen in chosen_rows(zh_tokenizer, run, draws=40):
            assert len(chosen) == len(words[i])
            for w in set(words[i]):
                picks = [c for c, x in zip(chosen, words[i]) if x == w]
                part += 0 < sum(picks) < len(picks)
                whole += len(picks) > 1 and all(picks)
        return part, whole

    part, whole = split_words(run_config(tmp_path, whole_word=True, word_segmenter="jieba"))
    assert part == 0 and whole > 20
    part, _ = split_words(run_config(tmp_path, whole_word=True))  # no segmenter: characters chosen one by one
    assert part > 20


def test_word_segmenter_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="data.word_segmenter"):
        run_config(tmp_path, word_segmenter="ltp")
    with pytest.raises(ConfigError, match="data.word_segmenter"):
        run_config(tmp_path, whole_word=False, word_segmenter="jieba")


def test_corpus_strips_annotations_and_drops_the_bundled_reviews(tmp_path):
    assert (
        strip_annotations("迈向/v  充满/v  [中国/ns  政府/n]nt  ，/w  iPhone/nx  2008/m")
        == "迈向充满中国政府，iPhone 2008"
    )
    review = next(iter(bundled_reviews()))
    tagged = tmp_path / "tagged.txt"
    tagged.write_text(
        "迈向/v  充满/v  希望/n  的/u  新/a  世纪/n\n\n迈向/v  充满/v  希望/n  的/u  新/a  世纪/n\n", encoding="utf-8"
    )
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{review}\n这本书很好看。\n", encoding="utf-8")
    assert list(read_zh_corpus([tagged, plain])) == ["迈向充满希望的新世纪", "这本书很好看。"]  # dedup, reviews out
    written = write_zh_corpus(tmp_path / "out", [tmp_path])
    assert written["documents"] == 2
    lines = (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted(["迈向充满希望的新世纪", "这本书很好看。"])


def test_zh_corpus_command(tmp_path, capsys):
    from damoxing.cli import main

    texts = tmp_path / "mine.txt"
    texts.write_text("今天天气很好。\n\n我们去公园散步。\n", encoding="utf-8")
    assert main(["data", "zh-corpus", str(tmp_path / "out"), str(texts)]) == 0
    assert (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8").splitlines() == [
        "今天天气很好。",
        "我们去公园散步。",
    ]
    assert main(["data", "zh-corpus", str(tmp_path / "out2"), str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
