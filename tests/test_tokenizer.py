"""Tokenizer: ids match transformers on real vocabularies; save/load both ways; training; clear errors."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from damoxing.errors import CheckpointError, DataError
from damoxing.tokenizer import Tokenizer, load_tokenizer, read_json

transformers = pytest.importorskip("transformers")

ENGLISH_AND_CHINESE = [
    "The cat sat on the mat.",
    "今天天气很好，我们去公园散步。",
    "Héllo   WORLD!! [MASK] costs $3.50 — naïve café, 2024-01-01.",
    "A long sentence " + "that keeps going and going " * 12 + "until it is cut.",
]
TRICKY = [
    "Hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\n\nlines",
    "unicode: naïve café Ωmega ∑ x²",
    "emoji 🤗👍🏽 and Chinese 你好，世界",
    "<|endoftext|> is special; 12345 digits; it's can't",
]


def assert_same(ours: dict, theirs, keys=("input_ids", "attention_mask", "token_type_ids")) -> None:
    for key in keys:
        if key in theirs or key in ours:
            assert key in ours and key in theirs, key
            assert torch.equal(ours[key], torch.as_tensor(theirs[key])), key


@pytest.fixture(scope="module")
def minilm_hf(minilm_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> Tokenizer:
    return Tokenizer.load(smollm2_gguf)


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_gguf: Path):
    """transformers' own GGUF tokenizer converter (slow: about 15 s on 2 cores)."""
    return transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)


# ----- MiniLM (BERT WordPiece) -----
def test_minilm_matches_transformers_padding_and_truncation(minilm_dir: Path):
    ours, theirs = load_tokenizer(minilm_dir), transformers.AutoTokenizer.from_pretrained(minilm_dir)
    assert ours.use_token_type_ids and ours.model_max_length == 512
    got = ours(ENGLISH_AND_CHINESE, max_length=24)
    want = theirs(ENGLISH_AND_CHINESE, padding=True, truncation=True, max_length=24, return_tensors="pt")
    assert got["input_ids"].shape == (4, 24)  # the long one is cut, the rest padded (not to tokenizer.json's 128)
    assert_same(got, want)
    assert len(ours.encode("今天天气很好")) == 6 + 2  # one token per CJK character (or [UNK] when not in vocab)
    assert ours.encode("天天") == [101, 1811, 1811, 102]


def test_minilm_pairs_match_transformers(minilm_dir: Path):
    ours, theirs = load_tokenizer(minilm_dir), transformers.AutoTokenizer.from_pretrained(minilm_dir)
    firsts, seconds = ENGLISH_AND_CHINESE[:3], ENGLISH_AND_CHINESE[1:]
    got = ours(firsts, seconds, max_length=30)
    want = theirs(firsts, seconds, padding=True, truncation=True, max_length=30, return_tensors="pt")
    assert_same(got, want)
    assert got["token_type_ids"].max() == 1


def test_minilm_from_vocab_txt_alone_gives_same_ids(minilm_dir: Path, tmp_path: Path):
    shutil.copy(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")
    from_vocab, from_json = Tokenizer.load(tmp_path), Tokenizer.load(minilm_dir)
    assert_same(from_vocab(ENGLISH_AND_CHINESE), from_json(ENGLISH_AND_CHINESE))
    assert from_vocab.mask_id == from_json.mask_id == 103
    assert from_vocab.decode(from_vocab.encode("The cat sat.")) == "the cat sat."


def test_padding_options(minilm_dir: Path):
    tok = load_tokenizer(minilm_dir)
    fixed = tok(["a b", "c"], padding="max_length", max_length=8)
    assert fixed["input_ids"].shape == (2, 8) and fixed["attention_mask"].sum().item() == 4 + 3
    left = tok(["a b", "c"], padding_side="left")
    assert left["input_ids"][1].tolist() == [tok.pad_id, tok.cls_id, tok.token_to_id("c"), tok.sep_id]
    lists = tok(["a b", "c"], padding=False, return_tensors=None)
    assert [len(row) for row in lists["input_ids"]] == [4, 3]


# ----- GPT-2 byte-level BPE -----
def test_gpt2_bpe_matches_transformers_and_round_trips(gpt2_bpe_dir: Path):
    ours = Tokenizer.load(gpt2_bpe_dir)
    theirs = transformers.GPT2TokenizerFast(str(gpt2_bpe_dir / "vocab.json"), str(gpt2_bpe_dir / "merges.txt"))
    assert ours.vocab_size == 50257 and ours.eos_id == 50256 and ours.pad_id is None
    assert not ours.use_token_type_ids
    for text in TRICKY:
        assert ours.encode(text) == theirs(text)["input_ids"], text
        assert ours.decode(ours.encode(text), skip_special_tokens=False) == text
    assert ours.encode("Hello world") == [15496, 995]
    batch = ours(TRICKY)  # no pad token: pads with eos, masked out
    assert set(batch) == {"input_ids", "attention_mask"}
    assert ours.batch_decode(batch["input_ids"]) == [t.replace("<|endoftext|>", "") for t in TRICKY]


# ----- SmolLM2 GGUF -----
@pytest.mark.slow
def test_smollm2_gguf_matches_transformers(smollm2: Tokenizer, smollm2_hf):
    assert smollm2.vocab_size == 49152
    assert (smollm2.bos_id, smollm2.eos_id, smollm2.pad_id) == (1, 2, 2)
    for text in TRICKY + ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n"]:
        assert smollm2.encode(text) == smollm2_hf(text)["input_ids"], text
        assert smollm2.decode(smollm2.encode(text), skip_special_tokens=False) == text
    got = smollm2(TRICKY)
    want = smollm2_hf(TRICKY, padding=True, return_tensors="pt")
    assert_same(got, want, keys=("input_ids", "attention_mask"))


def test_smollm2_gguf_known_ids(smollm2: Tokenizer):
    """Ids transformers gives for the same GGUF (see the slow test below): digits one per token, no BOS."""
    assert smollm2.encode("Hello 2024 world, 你好! <|im_start|>") == [
        19556,
        216,
        34,
        32,
        34,
        36,
        905,
        28,
        216,
        18645,
        250,
        48392,
        138,
        17,
        216,
        1,
    ]
    assert smollm2.special_ids == set(range(17))


def write_sentencepiece_gguf(path: Path) -> None:
    """A tiny Llama-style GGUF: sentencepiece BPE with byte fallback, merges implied by the scores."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    pieces = [
        "▁",
        "e",
        "h",
        "l",
        "o",
        "w",
        "r",
        "d",
        "t",
        "a",
        "c",
        "▁h",
        "he",
        "ll",
        "llo",
        "▁he",
        "▁hello",
        "▁w",
        "or",
        "▁wor",
        "ld",
        "▁world",
        "▁t",
        "▁th",
        "▁the",
        "at",
        "▁c",
        "▁cat",
    ]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    writer = gguf.GGUFWriter(str(path), "llama")
    for add, value in (
        (writer.add_block_count, 1),
        (writer.add_context_length, 64),
        (writer.add_head_count, 2),
        (writer.add_embedding_length, 8),
        (writer.add_feed_forward_length, 16),
        (writer.add_head_count_kv, 2),
        (writer.add_vocab_size, len(tokens)),
    ):
        add(value)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(pieces))
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(pieces))])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_llama_sentencepiece_gguf_matches_transformers(tmp_path: Path):
    write_sentencepiece_gguf(tmp_path / "tiny.gguf")
    ours = load_tokenizer(tmp_path / "tiny.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    assert (ours.bos_id, ours.eos_id, ours.unk_id) == (1, 2, 0)
    for text in ["hello world", " hello  the cat", "hello wörld 你好", "the\ncat</s>"]:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert ids[0] == 1 and ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.decode(ours.encode("hello wörld 你好")) == "hello wörld 你好"  # byte fallback


@pytest.mark.slow
def test_smollm2_chat_template_matches_transformers(smollm2: Tokenizer, smollm2_hf):
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "你好"},
    ]
    text = smollm2.apply_chat_template(messages)
    assert text == smollm2_hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert smollm2.encode(text) == smollm2_hf(text)["input_ids"]


# ----- save and load both ways -----
SOURCES = ["minilm", "gpt2", pytest.param("smollm2", marks=pytest.mark.slow)]


@pytest.mark.parametrize("source", SOURCES)
def test_saved_folder_loads_in_transformers(source, request, tmp_path: Path):
    fixture = {"minilm": "minilm_dir", "gpt2": "gpt2_bpe_dir", "smollm2": "smollm2_gguf"}[source]
    ours = load_tokenizer(request.getfixturevalue(fixture))
    ours.save(tmp_path / "tok")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    texts = ENGLISH_AND_CHINESE + TRICKY
    if ours.pad_id is None:
        theirs.pad_token = ours.special_tokens["eos"]
    assert_same(
        ours(texts, max_length=40), theirs(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    )
    assert theirs.chat_template == ours.chat_template
    again = load_tokenizer(tmp_path / "tok")
    assert again.special_tokens == ours.special_tokens and again.chat_template == ours.chat_template
    assert_same(again(texts), ours(texts))


@pytest.mark.parametrize("source", SOURCES)
def test_transformers_saved_folder_loads_in_damoxing(source, request, tmp_path: Path):
    if source == "gpt2":
        folder = request.getfixturevalue("gpt2_bpe_dir")
        theirs = transformers.GPT2TokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    else:
        theirs = request.getfixturevalue({"minilm": "minilm_hf", "smollm2": "smollm2_hf"}[source])
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_tokenizer(tmp_path / "hf")
    texts = ENGLISH_AND_CHINESE + TRICKY
    if theirs.pad_token is None:
        theirs.pad_token = theirs.eos_token
    assert_same(
        ours(texts, max_length=40), theirs(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    )
    assert ours.chat_template == theirs.chat_template


# ----- one tokenizer shared between threads -----
THREAD_SETTINGS = [  # (max_length, truncation, with pairs): one per thread, each different
    (5, True, False),
    (9, True, True),
    (14, False, True),
    (20, True, False),
    (27, True, True),
    (33, False, False),
    (48, True, False),
    (64, True, True),
]


@pytest.mark.parametrize("source", ["minilm", "gpt2"])
def test_one_tokenizer_shared_between_threads_gives_serial_results(source, request):
    """Eight threads encode at once with different lengths and settings: each gets what it gets alone."""
    tok = load_tokenizer(request.getfixturevalue({"minilm": "minilm_dir", "gpt2": "gpt2_bpe_dir"}[source]))
    texts = ENGLISH_AND_CHINESE + TRICKY
    pairs = texts[::-1]
    words = [text.split() for text in texts]

    def encode(max_length: int, truncation: bool, paired: bool):
        batch = tok(
            texts,
            pairs if paired else None,
            max_length=max_length,
            truncation=truncation,
            padding="max_length" if max_length > 30 else True,
            return_tensors=None,
        )
        encodings = tok.encode_words(words, max_length if truncation else None)
        return batch, [(e.ids, e.word_ids) for e in encodings]

    serial = [encode(*setting) for setting in THREAD_SETTINGS]
    assert len({repr(result) for result in serial}) == len(THREAD_SETTINGS)  # every thread's answer differs
    start = threading.Barrier(len(THREAD_SETTINGS))

    def worker(setting) -> list:
        start.wait(timeout=60)
        return [encode(*setting) for _ in range(40)]

    with ThreadPoolExecutor(len(THREAD_SETTINGS)) as pool:
        threaded = list(pool.map(worker, THREAD_SETTINGS))
    for setting, want, got in zip(THREAD_SETTINGS, serial, threaded):
        wrong = sum(result != want for result in got)
        assert wrong == 0, f"{setting}: {wrong} of {len(got)} threaded encodings differ from the serial one"


# ----- training -----
MIXED_TEXT = (
    "The quick brown fox jumps over the lazy dog.\n今天天气很好，我们去公园散步。\n"
    "Machine learning models learn from data.\n我喜欢学习机器学习和自然语言处理。\n"
) * 30


def test_train_wordpiece_splits_cjk_one_per_token(tmp_path: Path):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(MIXED_TEXT, encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=200, min_frequency=1)
    assert tok.vocab_size <= 200 and tok.pad_id == 0 and tok.mask_id == 4
    pieces = [tok.id_to_token(i) for i in tok.encode("我喜欢学习 the quick fox")]
    assert pieces[:6] == ["[CLS]", "我", "喜", "欢", "学", "习"] and pieces[-1] == "[SEP]"
    assert "the" in pieces and tok.unk_id not in tok.encode("The quick brown fox")
    batch = tok(["自然语言", "models"], ["今天", "data"])
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    tok.save(tmp_path / "wp")
    assert (tmp_path / "wp" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:5] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "wp")
    assert_same(
        tok(["自然语言", "models"], ["今天", "data"]),
        theirs(["自然语言", "models"], ["今天", "data"], padding=True, return_tensors="pt"),
    )


def test_train_bpe_round_trips(tmp_path: Path):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(MIXED_TEXT, encoding="utf-8")
    tok = Tokenizer.train_bpe([corpus], vocab_size=400, min_frequency=1)
    assert tok.vocab_size <= 400 and tok.eos_id == tok.token_to_id("<|endoftext|>") == 0
    for text in TRICKY + MIXED_TEXT.splitlines()[:4]:
        assert tok.decode(tok.encode(text), skip_special_tokens=False) == text
    assert len(tok.encode("The quick brown fox")) < len(b"The quick brown fox")  # merges were learned


# ----- bad input -----
def test_folder_without_tokenizer_files(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no tokenizer in") as info:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_path(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")


def test_corrupt_tokenizer_json(tmp_path: Path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Word')
    with pytest.raises(CheckpointError, match="not a valid tokenizer file") as info:
        load_tokenizer(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(info.value)


def test_corrupt_tokenizer_config(minilm_dir: Path, tmp_path: Path):
    shutil.copy(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_tokenizer(tmp_path)
    assert str(tmp_path / "tokenizer_config.json") in str(info.value)


def test_read_json_required_or_optional(tmp_path: Path):
    file = tmp_path / "special_tokens_map.json"
    assert read_json(file, optional=True) == {}
    with pytest.raises(CheckpointError, match="not found"):
        read_json(file)
    file.write_text('["a list"]')
    for optional in (False, True):
        with pytest.raises(CheckpointError, match="JSON object, not list"):
            read_json(file, optional=optional)
    file.write_text('{"cls_token": "[CLS]"}')
    assert read_json(file) == read_json(file, optional=True) == {"cls_token": "[CLS]"}


def test_corrupt_gguf(tmp_path: Path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable GGUF") as info:
        load_tokenizer(bad)
    assert str(bad) in str(info.value)


def test_training_on_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist") as info:
        Tokenizer.train_bpe([tmp_path / "absent.txt"], vocab_size=300)
    assert str(tmp_path / "absent.txt") in str(info.value)


def test_encode_words_maps_pieces_to_words_and_truncates(minilm_dir: Path, minilm_hf):
    tok = Tokenizer.load(minilm_dir)
    words = [["Tokenization", "is", "fun"], ["北京", "欢迎", "你"]]
    ours = tok.encode_words(words)
    theirs = minilm_hf(words, is_split_into_words=True)
    for i, enc in enumerate(ours):
        assert enc.ids == theirs["input_ids"][i]
        assert enc.word_ids == theirs.word_ids(i)
    cut = tok.encode_words(words, max_length=4)
    assert all(len(e.ids) == 4 for e in cut)
    assert len(tok.encode_words(words)[0].ids) > 4  # truncation was only for that call


@pytest.mark.parametrize("model", ["unigram", "bpe"])
def test_train_sentencepiece_joint_vocabulary_loads_in_transformers(model, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    corpus = tmp_path / "corpus.txt"
    lines = [
        "In the beginning God created the heaven and the earth.",
        "Au commencement, Dieu créa les cieux et la terre.",
        "And the earth was without form, and void.",
        "La terre était informe et vide.",
    ]
    corpus.write_text("\n".join(lines * 40) + "\n", encoding="utf-8")
    tok = Tokenizer.train_sentencepiece([corpus], vocab_size=150, model=model, extra_ids=10)
    assert (tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2)  # T5's layout
    sentinels = [tok.token_to_id(f"<extra_id_{i}>") for i in range(10)]
    assert sentinels == list(range(tok.vocab_size - 1, tok.vocab_size - 11, -1))  # <extra_id_0> is the last id
    ids = tok.encode("Dieu créa la terre.")
    assert ids[-1] == tok.eos_id and tok.decode(ids) == "Dieu créa la terre."
    assert tok.unk_id not in tok.encode("God created the earth, et Dieu créa la terre.")  # both alphabets are in
    tok.save(tmp_path / "tok")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    for text in lines + ["Dieu  créa\tla terre ."]:
        assert theirs(text)["input_ids"] == tok.encode(text)


def test_a_sentencepiece_folder_without_tokenizer_json_says_what_to_do(tmp_path: Path):
    (tmp_path / "source.spm").write_bytes(b"\x00")
    (tmp_path / "target.spm").write_bytes(b"\x00")
    with pytest.raises(CheckpointError, match=r"source\.spm, target\.spm\) and no tokenizer\.json"):
        Tokenizer.load(tmp_path)
