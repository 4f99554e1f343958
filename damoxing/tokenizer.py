"""Tokenizer: a thin class over the Hugging Face `tokenizers` library.

Loads a Hugging Face model folder (tokenizer.json, or vocab.txt for BERT WordPiece, or vocab.json +
merges.txt for GPT-2 byte-level BPE) or a GGUF file, encodes batches to tensors, decodes, and trains
new WordPiece and byte-level BPE vocabularies. It saves the Hugging Face layout, so
`transformers.AutoTokenizer` reads what it writes and it reads what transformers writes.

Padding and truncation are done per call, in this file: the backend's own stored settings are switched
off on load and never changed afterwards, so one Tokenizer can be shared between threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend

from damoxing.atomic import atomic_open, atomic_path
from damoxing.errors import CheckpointError, DataError, UserError

SPECIAL_NAMES = ("pad", "cls", "sep", "mask", "unk", "bos", "eos")
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Special tokens transformers assumes when a folder has only vocab.txt (BERT) or vocab.json + merges.txt (GPT-2).
BERT_DEFAULTS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
GPT2_DEFAULTS = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
HIDDEN = "\x00"  # spells a Marian vocabulary token that one side's SentencePiece model lacks (see _marian_backend)
TARGET_FILE = "target_tokenizer.json"  # the target side of a translation tokenizer, beside tokenizer.json
SENTENCEPIECE_FILES = ("spiece.model", "source.spm", "target.spm", "sentencepiece.bpe.model")
HUGE = 10**12  # transformers writes a huge model_max_length to mean "no limit"

# llama.cpp's `tokenizer.ggml.pre` names whose split regex differs from GPT-2's (as transformers maps them).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GGUF_SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "dbrx": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


class Tokenizer:
    """Text to ids and back. `backend` is a `tokenizers.Tokenizer`; the named special tokens are strings."""

    def __init__(
        self,
        backend: Backend,
        *,
        pad_token: str | None = None,
        cls_token: str | None = None,
        sep_token: str | None = None,
        mask_token: str | None = None,
        unk_token: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        model_max_length: int | None = None,
        use_token_type_ids: bool = False,
        chat_template: str | None = None,
    ):
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.special_tokens = {
            name: token
            for name, token in zip(
                SPECIAL_NAMES, (pad_token, cls_token, sep_token, mask_token, unk_token, bos_token, eos_token)
            )
            if token is not None
        }
        for name, token in self.special_tokens.items():
            if backend.token_to_id(token) is None:
                raise ValueError(f"{name}_token {token!r} is not in the vocabulary")
        self.model_max_length = model_max_length if model_max_length and model_max_length < HUGE else None
        self.use_token_type_ids = use_token_type_ids
        self.chat_template = chat_template
        self.target: Tokenizer | None = None  # target texts' tokenizer where it differs (Marian's target.spm)
        vocab = backend.get_vocab(with_added_tokens=False) if isinstance(backend.model, models.Unigram) else {}
        # Marian: the vocabulary's tokens that this side's SentencePiece model lacks (see _marian_backend)
        self._hidden = {t[len(HIDDEN) :]: i for t, i in vocab.items() if t.startswith(HIDDEN)}

    @property
    def target_side(self) -> Tokenizer:
        """The tokenizer for target texts (a translation's labels): Marian's target.spm, else this one. Both
        sides share one vocabulary, so either decodes generated ids."""
        return self.target or self

    # ----- vocabulary -----
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def _special_id(self, name: str) -> int | None:
        token = self.special_tokens.get(name)
        return None if token is None else self.backend.token_to_id(token)

    pad_id = property(lambda self: self._special_id("pad"))
    cls_id = property(lambda self: self._special_id("cls"))
    sep_id = property(lambda self: self._special_id("sep"))
    mask_id = property(lambda self: self._special_id("mask"))
    unk_id = property(lambda self: self._special_id("unk"))
    bos_id = property(lambda self: self._special_id("bos"))
    eos_id = property(lambda self: self._special_id("eos"))

    @property
    def special_ids(self) -> set[int]:
        """Ids of the named special tokens and of every added token marked special."""
        ids = {i for i, token in self.backend.get_added_tokens_decoder().items() if token.special}
        return ids | {self._special_id(name) for name in self.special_tokens}

    # ----- encoding and decoding -----
    def _ids(self, encoding) -> list[int]:
        """An encoding's ids. Marian: an <unk> whose text is a vocabulary token gets that token's id, as
        MarianTokenizer looks the text of SentencePiece's unknown pieces up in vocab.json."""
        if not self._hidden:
            return encoding.ids
        unk = self.unk_id
        return [self._hidden.get(t, i) if i == unk else i for i, t in zip(encoding.ids, encoding.tokens)]

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Ids of one text (or text pair), untruncated."""
        return self._ids(self.backend.encode(text, pair, add_special_tokens=add_special_tokens))

    def encode_words(self, words: Sequence[Sequence[str]], max_length: int | None = None) -> list:
        """Pre-split words (token classification) -> backend encodings; `word_ids` map tokens to words."""
        return self._encode_batch([list(w) for w in words], None, max_length, is_pretokenized=True)

    def __call__(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        padding: bool | str = True,
        truncation: bool = True,
        add_special_tokens: bool = True,
        padding_side: str = "right",
        return_tensors: str | None = "pt",
    ) -> dict:
        """Encode a batch: `input_ids`, `attention_mask` (and `token_type_ids` for encoders).

        padding: True/"longest" pads to the longest in the batch, "max_length" to `max_length`, False
        not at all (then `return_tensors` must be None unless all lengths agree). truncation cuts to
        `max_length` (default: `model_max_length`), counting the special tokens, longest text first.
        Without a pad token, padding uses the eos token (the attention mask hides it).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
        max_length = max_length or self.model_max_length
        encodings = self._encode_batch(texts, pairs, max_length if truncation else None, add_special_tokens)
        batch = {
            "input_ids": [self._ids(e) for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if self.use_token_type_ids:
            batch["token_type_ids"] = [e.type_ids for e in encodings]
        if padding:
            longest = max((len(row) for row in batch["input_ids"]), default=0)
            if padding == "max_length" and not max_length:
                raise ValueError('padding="max_length" needs max_length (or a model_max_length)')
            batch = self._pad(batch, max(longest, max_length) if padding == "max_length" else longest, padding_side)
        if return_tensors == "pt":
            return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        if return_tensors is not None:
            raise ValueError(f'return_tensors must be "pt" or None, not {return_tensors!r}')
        return batch

    def _encode_batch(
        self,
        texts: list,
        pairs: list[str] | None,
        max_length: int | None,
        add_special_tokens: bool = True,
        is_pretokenized: bool = False,
    ) -> list:
        """Backend encodings, each cut to `max_length` tokens counting the special tokens (None: not cut).

        The cut is made here, as the tokenizers library makes it, and not by switching on the backend's
        truncation, which other threads share: encode each text and pair text without special tokens, cut
        the longest first, then let `post_process` add the special tokens (and their type ids).
        """
        specials = self.backend.num_special_tokens_to_add(pairs is not None) if add_special_tokens else 0
        budget = max_length - specials if max_length else -1
        if budget < 0:  # no limit, or one shorter than the special tokens: the library leaves such texts whole
            inputs = texts if pairs is None else list(zip(texts, pairs))
            return self.backend.encode_batch(
                inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_pretokenized
            )
        firsts = self.backend.encode_batch(texts, add_special_tokens=False, is_pretokenized=is_pretokenized)
        # Pair texts are encoded behind an empty first text, so each keeps type id 1 as in a real pair.
        seconds = (
            [None] * len(texts)
            if pairs is None
            else self.backend.encode_batch([("", pair) for pair in pairs], add_special_tokens=False)
        )
        encodings = []
        for first, second in zip(firsts, seconds):
            keep_first, keep_second = _longest_first(len(first), 0 if second is None else len(second), budget)
            first.truncate(keep_first)
            if second is not None:
                second.truncate(keep_second)
            encodings.append(self.backend.post_process(first, second, add_special_tokens=add_special_tokens))
        return encodings

    def _pad(self, batch: dict[str, list[list[int]]], length: int, side: str) -> dict[str, list[list[int]]]:
        """Pad every row to `length` on `side` ("right" or "left")."""
        if side not in ("right", "left"):
            raise ValueError(f'padding_side must be "right" or "left", not {side!r}')
        pad_id = self.pad_id if self.pad_id is not None else self.eos_id
        if pad_id is None and any(len(row) != length for row in batch["input_ids"]):
            raise ValueError("this tokenizer has no pad or eos token; pass padding=False or give it a pad_token")
        fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0}
        padded = {}
        for key, rows in batch.items():
            extra = [[fill[key]] * (length - len(row)) for row in rows]
            padded[key] = [row + e if side == "right" else e + row for row, e in zip(rows, extra)]
        return padded

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text of one sequence of ids."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(
        self, batch: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True
    ) -> list[str]:
        """Texts of a batch of id sequences."""
        batch = batch.tolist() if isinstance(batch, torch.Tensor) else [list(ids) for ids in batch]
        return self.backend.decode_batch(batch, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render `messages` ([{"role": ..., "content": ...}]) with the chat template (needs jinja2)."""
        if not self.chat_template:
            raise UserError("this tokenizer has no chat template; load one from a chat model's folder or GGUF file")
        import jinja2.sandbox

        def raise_exception(message: str):
            raise UserError(f"chat template: {message}")

        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = raise_exception
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        tokens = {f"{name}_token": token for name, token in self.special_tokens.items()}
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **tokens
        )

    # ----- loading -----
    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a Hugging Face model folder or a .gguf file."""
        path = Path(path)
        if path.is_file() and path.suffix == ".gguf":
            return cls.from_gguf(path)
        if not path.is_dir():
            what = "is not a tokenizer folder" if path.exists() else "does not exist"
            raise CheckpointError(
                f"{path} {what}: pass a model folder (tokenizer.json, vocab.txt or "
                "vocab.json + merges.txt) or a .gguf file"
            )
        config = read_json(path / "tokenizer_config.json", optional=True)
        for name, value in read_json(path / "special_tokens_map.json", optional=True).items():
            config.setdefault(name, value)
        specials = {f"{n}_token": _content(config.get(f"{n}_token")) for n in SPECIAL_NAMES}
        if (path / "tokenizer.json").is_file():
            try:
                backend = Backend.from_file(str(path / "tokenizer.json"))
            except Exception as error:  # noqa: BLE001
                raise CheckpointError(
                    f"{path / 'tokenizer.json'} is not a valid tokenizer file ({error}); "
                    "replace it with a good copy or delete it to use vocab.txt"
                ) from None
        elif (path / "vocab.txt").is_file():
            specials = {**BERT_DEFAULTS, **{key: value for key, value in specials.items() if value}}
            backend = _bert_backend(path / "vocab.txt", specials, config)
        elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            specials = {**GPT2_DEFAULTS, **{key: value for key, value in specials.items() if value}}
            backend = _gpt2_backend(path / "vocab.json", path / "merges.txt", specials)
        elif (path / "source.spm").is_file() and (path / "vocab.json").is_file():
            return cls._from_marian(path, specials, config)
        elif any((path / name).is_file() for name in SENTENCEPIECE_FILES):
            found = ", ".join(name for name in SENTENCEPIECE_FILES if (path / name).is_file())
            raise CheckpointError(
                f"{path} holds a SentencePiece model ({found}) and no tokenizer.json, the file damoxing reads. "
                "T5: copy tokenizer.json from the model's Hub page, or write it with transformers "
                "(AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER); needs the sentencepiece package). "
                "Marian: the folder needs source.spm, target.spm and vocab.json together; copy the missing ones "
                "from the model's Hub page"
            )
        else:
            raise CheckpointError(
                f"no tokenizer in {path}: expected tokenizer.json, vocab.txt, or "
                "vocab.json + merges.txt; copy the tokenizer files from the model's source"
            )
        template = config.get("chat_template")
        if (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text(encoding="utf-8")
        input_names = config.get("model_input_names")
        type_ids = "token_type_ids" in input_names if input_names else _has_type_ids(backend)
        specials = {key: value for key, value in specials.items() if value and backend.token_to_id(value) is not None}
        tokenizer = cls(
            backend,
            **specials,
            model_max_length=config.get("model_max_length"),
            use_token_type_ids=type_ids,
            chat_template=template if isinstance(template, str) else None,
        )
        if (path / "tokenizer.json").is_file() and (path / TARGET_FILE).is_file():
            target = Backend.from_file(str(path / TARGET_FILE))
            tokenizer.target = cls(target, **specials, model_max_length=config.get("model_max_length"))
        return tokenizer

    @classmethod
    def _from_marian(cls, path: Path, specials: dict[str, str | None], config: dict) -> Tokenizer:
        """A Marian folder (source.spm, target.spm, vocab.json): each SentencePiece model becomes a `tokenizers`
        Unigram over vocab.json's ids, as MarianTokenizer maps pieces; the source side encodes, `target` the
        target side."""
        defaults = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        specials = {**defaults, **{key: value for key, value in specials.items() if value}}
        vocab = read_json(path / "vocab.json")
        target_file = path / "target.spm" if (path / "target.spm").is_file() else path / "source.spm"
        sides = [
            cls(
                _marian_backend(spm, vocab, specials),
                **specials,
                model_max_length=config.get("model_max_length", 512),
            )
            for spm in (path / "source.spm", target_file)
        ]
        sides[0].target = sides[1]
        return sides[0]

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> Tokenizer:
        """Build the tokenizer described by a GGUF file's metadata (byte-level BPE or sentencepiece BPE)."""
        import gguf

        try:
            reader = gguf.GGUFReader(str(path))
            meta = {
                key: field.contents()
                for key, field in reader.fields.items()
                if key.startswith("tokenizer.") or key == "general.architecture"
            }
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"{path} is not a readable GGUF file ({error}); download it again") from None
        kind = meta.get("tokenizer.ggml.model")
        tokens = meta.get("tokenizer.ggml.tokens")
        if kind not in ("gpt2", "llama") or not tokens:
            raise CheckpointError(
                f"{path} has no supported tokenizer (tokenizer.ggml.model = {kind!r}; "
                "damoxing reads 'gpt2' and 'llama'); use a folder with tokenizer.json instead"
            )
        types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        if kind == "gpt2":
            alphabet = set(pre_tokenizers.ByteLevel.alphabet())
            spelling = _bytes_to_unicode()
            tokens = [t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8")) for t in tokens]
            backend = _byte_level_bpe({t: i for i, t in enumerate(tokens)}, _merges(meta, tokens))
            split = GGUF_SPLITS.get(meta.get("tokenizer.ggml.pre"))
            if split is not None:
                backend.pre_tokenizer = pre_tokenizers.Sequence(
                    [
                        pre_tokenizers.Split(Regex(split), behavior="isolated"),
                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                    ]
                )
            control = [t for t, k in zip(tokens, types) if k == 3 and set(t) <= alphabet]
        else:
            backend = _sentencepiece_bpe(tokens, _merges(meta, tokens), meta.get("tokenizer.ggml.unknown_token_id"))
            control = [t for t, k in zip(tokens, types) if k == 3]
        backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
        backend.add_tokens([AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types) if k == 4])
        ids = {
            n: meta.get(f"tokenizer.ggml.{key}")
            for n, key in (
                ("bos", "bos_token_id"),
                ("eos", "eos_token_id"),
                ("pad", "padding_token_id"),
                ("unk", "unknown_token_id"),
            )
        }
        specials = {f"{n}_token": tokens[i] for n, i in ids.items() if i is not None and 0 <= i < len(tokens)}
        if meta.get("tokenizer.ggml.add_bos_token", kind == "llama") and "bos_token" in specials:
            bos = specials["bos_token"]
            backend.post_processor = processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, ids["bos"])]
            )
        return cls(backend, **specials, chat_template=meta.get("tokenizer.chat_template"))

    # ----- saving -----
    def save(self, folder: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and vocab.txt for WordPiece)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))
        if self.target is not None:  # Marian's target side; load reads it back
            with atomic_path(folder / TARGET_FILE) as tmp:
                self.target.backend.save(str(tmp))
        specials = {f"{name}_token": token for name, token in self.special_tokens.items()}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]
            if self.use_token_type_ids
            else ["input_ids", "attention_mask"],
        }
        if self.model_max_length:
            config["model_max_length"] = self.model_max_length
        if self.chat_template:
            config["chat_template"] = self.chat_template
        for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
            with atomic_open(folder / name) as f:
                json.dump(data, f, indent=2, ensure_ascii=False)
                f.write("\n")
        if isinstance(self.backend.model, models.WordPiece):
            vocab = self.backend.get_vocab(with_added_tokens=True)
            with atomic_open(folder / "vocab.txt") as f:
                f.writelines(token + "\n" for token, _ in sorted(vocab.items(), key=lambda item: item[1]))

    # ----- training -----
    @classmethod
    def train_wordpiece(
        cls,
        files: Iterable[str | os.PathLike],
        vocab_size: int = 30522,
        lowercase: bool = True,
        min_frequency: int = 2,
        model_max_length: int = 512,
    ) -> Tokenizer:
        """Train a BERT-style WordPiece vocabulary; CJK characters become one token each."""
        backend = Backend(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(BERT_SPECIALS),
            continuing_subword_prefix="##",
        )
        backend.train(_checked_files(files), trainer)
        backend.post_processor = _bert_template(backend, "[CLS]", "[SEP]")
        return cls(
            backend,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=model_max_length,
            use_token_type_ids=True,
        )

    @classmethod
    def train_bpe(
        cls,
        files: Iterable[str | os.PathLike],
        vocab_size: int = 50257,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = ("<|endoftext|>",),
        model_max_length: int = 1024,
    ) -> Tokenizer:
        """Train a GPT-2 byte-level BPE vocabulary; the first special token is bos, eos and unk."""
        backend = _byte_level_bpe({}, [])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        backend.train(_checked_files(files), trainer)
        first = special_tokens[0] if special_tokens else None
        return cls(backend, bos_token=first, eos_token=first, unk_token=first, model_max_length=model_max_length)

    @classmethod
    def train_sentencepiece(
        cls,
        files: Iterable[str | os.PathLike],
        vocab_size: int = 8000,
        model: str = "unigram",
        extra_ids: int = 0,
        model_max_length: int = 512,
    ) -> Tokenizer:
        """Train a SentencePiece-style vocabulary as T5 and Marian use: Unigram (default) or BPE over words
        marked by a leading "▁", NFKC-normalised text, and T5's special tokens <pad> = 0, </s> = 1,
        <unk> = 2. Encoding appends </s>. `extra_ids` sentinels <extra_id_0> ... come last, <extra_id_0>
        with the highest id (T5's span corruption). Train it on both languages for a joint vocabulary."""
        if model not in ("unigram", "bpe"):
            raise ValueError(f"model must be 'unigram' or 'bpe', not {model!r}")
        specials = ["<pad>", "</s>", "<unk>"]
        size = vocab_size - extra_ids
        if model == "unigram":
            backend = Backend(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=size, special_tokens=specials, unk_token="<unk>", max_piece_length=16
            )
        else:
            backend = Backend(models.BPE(unk_token="<unk>"))
            trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=specials, min_frequency=2)
        backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        backend.train_from_iterator(_lines(_checked_files(files)), trainer)  # lines without their newline
        backend.add_special_tokens(
            [AddedToken(f"<extra_id_{i}>", special=True, normalized=False) for i in reversed(range(extra_ids))]
        )
        backend.post_processor = processors.TemplateProcessing(
            single="$A:0 </s>:0", pair="$A:0 </s>:0 $B:0 </s>:0", special_tokens=[("</s>", backend.token_to_id("</s>"))]
        )
        return cls(backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=model_max_length)


# ----- truncation -----
def _longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens a text and its pair text (0 without one) keep to fit `budget`, the longer cut first.

    The tokenizers library's `longest_first` rule: the longer keeps what the shorter leaves; when the shorter
    alone is over half the budget, both keep half (the odd token goes to the longer, or to the pair on a tie).
    """
    if first + second <= budget:
        return first, second
    shorter = min(first, second)
    keep_shorter, keep_longer = (
        (shorter, budget - shorter) if 2 * shorter <= budget else (budget // 2, budget - budget // 2)
    )
    return (keep_longer, keep_shorter) if first > second else (keep_shorter, keep_longer)


# ----- building backends -----
def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Backend:
    """GPT-2 byte-level BPE, as transformers' GPT2TokenizerFast builds it."""
    backend = Backend(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
        if vocab
        else models.BPE()
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def _gpt2_backend(vocab_file: Path, merges_file: Path, specials: dict[str, str | None]) -> Backend:
    """Byte-level BPE from vocab.json + merges.txt, with the named special tokens added."""
    try:
        vocab, merges = models.BPE.read_file(str(vocab_file), str(merges_file))
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(
            f"cannot read {vocab_file} + {merges_file} ({error}); replace them with good copies"
        ) from None
    backend = _byte_level_bpe(vocab, merges)
    names = dict.fromkeys(t for t in specials.values() if t)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
    return backend


def _bert_backend(vocab_file: Path, specials: dict[str, str | None], config: dict) -> Backend:
    """BERT WordPiece from vocab.txt, as transformers' BertTokenizer builds it."""
    try:
        vocab = models.WordPiece.read_file(str(vocab_file))
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"cannot read {vocab_file} ({error}); replace it with a good copy") from None
    backend = Backend(models.WordPiece(vocab, unk_token=specials["unk_token"]))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("do_lower_case", True),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials.values() if t and t in vocab]
    )
    backend.post_processor = _bert_template(backend, specials["cls_token"], specials["sep_token"])
    return backend


def _bert_template(backend: Backend, cls_token: str, sep_token: str) -> processors.TemplateProcessing:
    """[CLS] A [SEP] and [CLS] A [SEP] B [SEP], with type id 1 on B."""
    return processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, backend.token_to_id(cls_token)), (sep_token, backend.token_to_id(sep_token))],
    )


def _sentencepiece_bpe(tokens: list[str], merges: list[tuple[str, str]], unk_id: int | None) -> Backend:
    """Llama-style sentencepiece BPE with byte fallback, as transformers' LlamaTokenizer builds it."""
    unk = tokens[unk_id] if unk_id is not None else None
    backend = Backend(
        models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token=unk, byte_fallback=True, fuse_unk=True
        )
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    return backend


def _marian_backend(spm_file: Path, vocab: dict[str, int], specials: dict[str, str]) -> Backend:
    """One side of a Marian tokenizer: the SentencePiece Unigram model in `spm_file` (its pieces, scores and
    normalizer) over vocab.json's ids, as transformers' MarianTokenizer maps them: a piece missing from vocab.json
    is <unk>. A vocab.json token this model lacks (the other side's pieces) must never match text, or it would
    stand where SentencePiece puts <unk>: its entry is spelled behind HIDDEN, which the normalizer removes from
    any text and the decoder from the output. The end token is appended; language codes (>>fra<<) are tokens of
    their own."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise CheckpointError(
            f"{spm_file.parent} is a Marian tokenizer (source.spm, target.spm): reading it needs the sentencepiece "
            "and protobuf packages (pip install sentencepiece protobuf)"
        ) from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(spm_file.read_bytes())
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{spm_file} is not a SentencePiece model ({error}); download it again") from None
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise CheckpointError(f"{spm_file} is not a Unigram SentencePiece model, the kind Marian uses")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))) or specials["unk_token"] not in vocab:
        raise CheckpointError(
            f"{spm_file.parent / 'vocab.json'} should map tokens to the ids 0 .. N-1 and hold "
            f"{specials['unk_token']!r}; download it again"
        )
    normal, user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL, 4  # 4: USER_DEFINED
    scores = {p.piece: p.score for p in proto.pieces if p.type in (normal, user_defined)}
    floor = min(scores.values(), default=0.0) - 1.0e4  # below any path through real pieces
    tokens = sorted(vocab, key=vocab.get)
    codes = [t for t in tokens if t.startswith(">>") and t.endswith("<<")]
    keep = {*scores, *specials.values(), *codes}
    pieces = [(t, scores[t]) if t in scores else (t if t in keep else HIDDEN + t, floor) for t in tokens]
    backend = Backend(models.Unigram(pieces, unk_id=vocab[specials["unk_token"]]))
    # the normalizer in SentencePiece's order (as transformers' SpmConverter builds it)
    spec = proto.normalizer_spec
    steps = [normalizers.Replace(HIDDEN, "")]
    steps += [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
    if spec.remove_extra_whitespaces:  # only spaces: SentencePiece leaves other whitespace alone
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:  # Metaspace skips the prefix when the text starts with "▁"; SentencePiece does not
        steps.append(normalizers.Replace(Regex("\\A\u2581"), "\u2581\u2581"))
    backend.normalizer = normalizers.Sequence(steps)
    scheme = "always" if spec.add_dummy_prefix else "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(HIDDEN, ""), decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=False)]
    )
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(specials.values())]
    )
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in codes])
    eos = specials["eos_token"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 $B:0 {eos}:0", special_tokens=[(eos, vocab[eos])]
    )
    return backend


def _merges(meta: dict, tokens: list[str]) -> list[tuple[str, str]]:
    """The file's merges, or (sentencepiece files without them) merges rebuilt from the token scores."""
    if meta.get("tokenizer.ggml.merges"):
        return [tuple(merge.split(" ", 1)) for merge in meta["tokenizer.ggml.merges"]]
    scores = meta.get("tokenizer.ggml.scores") or [-float(i) for i in range(len(tokens))]
    vocab = {t: i for i, t in enumerate(tokens)}
    found = []  # (score of the merged token, left, right), in the order transformers' generate_merges uses
    for token, score in dict(zip(tokens, scores)).items():
        pairs = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in vocab and token[i:] in vocab]
        found += [(score, a, b) for a, b in sorted(pairs, key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))]
    found.sort(key=lambda m: (m[0], len(m[1]), len(m[2])), reverse=True)
    return [(a, b) for _, a, b in found]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table: printable bytes stand for themselves, the rest move above 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b], extra = chr(256 + extra), extra + 1
    return table


def _has_type_ids(backend: Backend) -> bool:
    """Whether the post-processor marks a pair BERT-style: a special token with type id 1, like [SEP]:1."""
    processor = json.loads(backend.to_str()).get("post_processor") or {}
    for step in processor.get("processors", [processor]):
        if step.get("type") == "BertProcessing":
            return True
        if step.get("type") == "TemplateProcessing":  # noqa: SIM102
            if any(piece.get("SpecialToken", {}).get("type_id") for piece in step["pair"]):
                return True
    return False


def read_json(path: Path, optional: bool = False) -> dict:
    """A JSON file's object. A missing file is an error, or {} when the file is `optional` (a model folder may
    leave out tokenizer_config.json, not config.json)."""
    if not path.is_file():
        if optional:
            return {}
        raise CheckpointError(f"{path} not found: pass the model folder that holds {path.name} (or a .gguf file)")
    what_to_do = "fix or delete it" if optional else "fix it or download it again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot read it ({error.strerror or error}); check that you may read it "
            "(ls -l; chmod a+r), or copy the model folder somewhere you can"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); {what_to_do}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object, not {type(data).__name__}; {what_to_do}")
    return data


def _content(value) -> str | None:
    """A special token as tokenizer_config.json spells it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _checked_files(files: Iterable[str | os.PathLike]) -> list[str]:
    """Training files as strings; each must exist."""
    files = [str(f) for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"training text file {f} does not exist")
    if not files:
        raise DataError("no training text files given")
    return files


def _lines(files: list[str]) -> Iterable[str]:
    for f in files:
        with open(f, encoding="utf-8-sig") as lines:  # a byte-order mark is not text
            yield from (line.rstrip("\n") for line in lines)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a Hugging Face model folder or a .gguf file."""
    return Tokenizer.load(path)
