"""Marian folders (source.spm, target.spm, vocab.json, no tokenizer.json): damoxing's ids equal MarianTokenizer's."""

from __future__ import annotations

import json

import pytest

from damoxing.errors import CheckpointError
from damoxing.tokenizer import Tokenizer

spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

ENGLISH = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
]
FRENCH = [
    "Au commencement, Dieu créa les cieux et la terre.",
    "La terre était informe et vide: il y avait des ténèbres à la surface de l'abîme.",
    "Dieu dit: Que la lumière soit! Et la lumière fut.",
    "Dieu vit que la lumière était bonne; et Dieu sépara la lumière d'avec les ténèbres.",
    "Dieu appela la lumière jour, et il appela les ténèbres nuit.",
    "Ainsi, il y eut un soir, et il y eut un matin: ce fut le premier jour.",
]
SENTENCES = [
    "And God said, Let the waters be gathered.",
    "  Leading,   inner and trailing spaces  ",
    "Unknown letters: ß, 漢字, ü and Ω!",
    "Dieu créa la lumière.",  # target-side words in a source sentence
    ">>fra<< And there was light.",  # a target-language code, as multilingual Marian models take
    "ＦＵＬＬＷＩＤＴＨ and ligature ﬁne",  # NFKC folds these
    "</s> inside the text",
    "",
]


def _train(lines: list[str], prefix) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4),
        model_prefix=str(prefix),
        model_type="unigram",
        vocab_size=60,
        hard_vocab_limit=False,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    """A Marian-style folder: two SentencePiece models and one vocabulary over both, ordered as Marian's
    (</s> 0, <unk> 1, the pieces, a language code, <pad> last)."""
    folder = tmp_path_factory.mktemp("marian")
    _train(ENGLISH, folder / "source")
    _train(FRENCH, folder / "target")
    (folder / "source.model").rename(folder / "source.spm")
    (folder / "target.model").rename(folder / "target.spm")
    tokens = ["</s>", "<unk>"]
    for side in ("source", "target"):
        processor = spm.SentencePieceProcessor(model_file=str(folder / f"{side}.spm"))
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        tokens += [p for p in pieces if p not in tokens and not processor.is_control(processor.piece_to_id(p))]
    tokens = [t for t in tokens if t != "<unk>" or tokens.index(t) == 1]
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*tokens, ">>fra<<", "<pad>"]))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


def test_marian_source_ids_equal_marian_tokenizers(marian):
    ours = Tokenizer.load(marian)
    theirs = transformers.MarianTokenizer.from_pretrained(str(marian))
    for text in SENTENCES:
        assert ours.encode(text) == theirs(text)["input_ids"], text
    batch, expected = ours(SENTENCES[:4]), theirs(SENTENCES[:4], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == expected["attention_mask"].tolist()
    assert (ours.eos_id, ours.pad_id, ours.unk_id) == (theirs.eos_token_id, theirs.pad_token_id, theirs.unk_token_id)


def test_marian_target_side_encodes_labels_and_decodes_like_marian_tokenizer(marian):
    ours = Tokenizer.load(marian)
    theirs = transformers.MarianTokenizer.from_pretrained(str(marian))
    targets = [*FRENCH[:2], "Et Dieu vit la lumière, ß et 漢."]
    for text in targets:
        ids = theirs(text_target=text)["input_ids"]
        assert ours.target_side.encode(text) == ids, text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
    # the two sides really differ: the same French sentence cuts into other pieces with the English model
    assert any(ours.encode(t) != ours.target_side.encode(t) for t in FRENCH)


def test_a_saved_marian_tokenizer_keeps_both_sides(marian, tmp_path):
    ours = Tokenizer.load(marian)
    ours.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    for text in [*SENTENCES, *FRENCH]:
        assert again.encode(text) == ours.encode(text)
        assert again.target_side.encode(text) == ours.target_side.encode(text)


def test_a_marian_folder_without_its_vocabulary_says_what_to_copy(marian, tmp_path):
    (tmp_path / "source.spm").write_bytes((marian / "source.spm").read_bytes())
    with pytest.raises(CheckpointError, match="vocab.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "vocab.json").write_text('{"</s>": 0, "<unk>": 1}', encoding="utf-8")
    (tmp_path / "source.spm").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="source.spm is not a SentencePiece model"):
        Tokenizer.load(tmp_path)
