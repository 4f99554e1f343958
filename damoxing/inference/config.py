"""GenerationConfig: every decoding setting in one frozen dataclass, and the defaults a checkpoint ships.

Hugging Face folders carry `generation_config.json` (else `config.json`'s eos_token_id); GGUF files carry
`general.sampling.*` and the tokenizer's end-of-generation ids. Keys the checkpoint lacks keep the defaults below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import check, check_choice, check_positive, check_range
from ..errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # stop tokens are banned until this many new tokens
    temperature: float = 0.0  # 0: greedy (or beam search); > 0: sample from softmax(logits / temperature)
    top_k: int = 0  # sample among the k most probable tokens; 0: off
    top_p: float = 1.0  # ... among the fewest tokens whose probabilities sum to at least top_p; 1: off
    min_p: float = 0.0  # ... among tokens at least min_p times as probable as the most probable one; 0: off
    repetition_penalty: float = 1.0  # > 1 discourages every token already in the prompt or the output (CTRL)
    no_repeat_ngram_size: int = 0  # n > 0: never repeat an n-gram of the prompt or the output
    num_beams: int = 1  # > 1: beam search
    length_penalty: float = 1.0  # beam score = sum of log-probabilities / length ** length_penalty
    early_stopping: bool | str = False  # beam search: True, False (heuristic) or "never", as in transformers
    stop_token_ids: tuple[int, ...] = ()  # a row ends after emitting one of these (end of sequence, end of turn)
    stop_strings: tuple[str, ...] = ()  # text-level: the text ends before the first of these (see streaming.py)
    bad_token_ids: tuple[int, ...] = ()  # never generated (Marian bans its pad token)
    forced_eos_token_id: int | None = None  # the last step allowed must emit this token (Marian: its end token)
    pad_token_id: int | None = None  # fills rows that stopped early; default: the first stop token, else 0
    seed: int | None = None  # sampling: the same seed gives the same tokens
    logprobs: int = 0  # n > 0: report the n most probable tokens and their log-probabilities at every step

    def __post_init__(self):
        for key in (
            "stop_token_ids",
            "stop_strings",
            "bad_token_ids",
        ):  # lists (from YAML or JSON) become tuples: frozen and hashable
            value = getattr(self, key)
            if isinstance(value, (int, str)):
                value = (value,)
            object.__setattr__(self, key, tuple(value))
        for key in ("max_new_tokens", "num_beams"):
            _check_int(key, getattr(self, key), 1)
        for key in ("min_new_tokens", "top_k", "no_repeat_ngram_size", "logprobs"):
            _check_int(key, getattr(self, key), 0)
        check(
            self.min_new_tokens <= self.max_new_tokens,
            "generation.min_new_tokens",
            f"{self.min_new_tokens} is more than generation.max_new_tokens ({self.max_new_tokens}).",
        )
        for key in ("temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"):
            check(
                isinstance(getattr(self, key), (int, float)) and not isinstance(getattr(self, key), bool),
                f"generation.{key}",
                f"must be a number, got {getattr(self, key)!r}.",
            )
        check_positive("generation.temperature", self.temperature, allow_zero=True)
        check(0.0 < self.top_p <= 1.0, "generation.top_p", f"must be in (0, 1], got {self.top_p!r}.")
        check_range("generation.min_p", self.min_p, 0.0, 1.0)
        check_positive("generation.repetition_penalty", self.repetition_penalty)
        check_choice("generation.early_stopping", self.early_stopping, (False, True, "never"))
        for key in ("stop_token_ids", "bad_token_ids"):
            for token in getattr(self, key):
                _check_int(key, token, 0)
        for text in self.stop_strings:
            check(
                isinstance(text, str) and text != "",
                "generation.stop_strings",
                f"each stop string must be non-empty text, got {text!r}.",
            )
        for key in ("pad_token_id", "forced_eos_token_id"):
            if getattr(self, key) is not None:
                _check_int(key, getattr(self, key), 0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0)

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    @property
    def pad_id(self) -> int:
        """What fills a row after it stopped."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.stop_token_ids[0] if self.stop_token_ids else 0


def _check_int(key: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"generation.{key}: must be a whole number, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"generation.{key}: must be >= {minimum}, got {value!r}.")


# ------------------------------------------------------------------ defaults shipped with a checkpoint
# generation_config.json key -> GenerationConfig field (temperature is handled with do_sample)
HF_KEYS = {
    "max_new_tokens": "max_new_tokens",
    "min_new_tokens": "min_new_tokens",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "no_repeat_ngram_size": "no_repeat_ngram_size",
    "num_beams": "num_beams",
    "length_penalty": "length_penalty",
    "early_stopping": "early_stopping",
    "pad_token_id": "pad_token_id",
    "forced_eos_token_id": "forced_eos_token_id",
}
GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
    "tokenizer.ggml.padding_token_id": "pad_token_id",
}
GGUF_STOP_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")


def checkpoint_generation_defaults(path: str | Path) -> dict:
    """The generation settings a checkpoint (Hugging Face folder or .gguf file) ships, as GenerationConfig fields."""
    path = Path(path)
    if path.suffix == ".gguf" and path.is_file():
        return _gguf_defaults(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is neither a model folder nor a .gguf file: pass the checkpoint the model was loaded from"
        )
    source = path / "generation_config.json"
    settings = _read_json(source) if source.is_file() else {}
    out = {field: settings[key] for key, field in HF_KEYS.items() if settings.get(key) is not None}
    banned = settings.get("bad_words_ids") or []  # single-token "words" only (Marian bans [[pad]])
    if isinstance(banned, list) and all(isinstance(word, list) and len(word) == 1 for word in banned) and banned:
        out["bad_token_ids"] = tuple(word[0] for word in banned)
    if settings.get("do_sample"):
        out["temperature"] = settings["temperature"] if settings.get("temperature") is not None else 1.0
    eos = settings.get("eos_token_id")
    if eos is None and (path / "config.json").is_file():
        eos = _read_json(path / "config.json").get("eos_token_id")
    if eos is not None:
        out["stop_token_ids"] = tuple(eos) if isinstance(eos, list) else (eos,)
    return out


def load_generation_config(path: str | Path) -> GenerationConfig:
    """GenerationConfig with the checkpoint's defaults; change fields with dataclasses.replace(config, ...)."""
    defaults = checkpoint_generation_defaults(path)
    try:
        return GenerationConfig(**defaults)
    except ConfigError as error:
        raise CheckpointError(f"{path}: the checkpoint's generation settings are invalid: {error}") from None


def _gguf_defaults(path: Path) -> dict:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        meta = {
            key: field.contents()
            for key, field in reader.fields.items()
            if key.startswith("general.sampling.") or key in GGUF_KEYS or key in GGUF_STOP_KEYS
        }
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path} is not a readable GGUF file ({error}); download it again") from None
    out = {field: meta[key] for key, field in GGUF_KEYS.items() if key in meta}
    if "top_k" in out:
        out["top_k"] = int(out["top_k"])
    stops = [int(meta[key]) for key in GGUF_STOP_KEYS if key in meta]
    if stops:
        out["stop_token_ids"] = tuple(dict.fromkeys(stops))
    return out


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); fix it or download it again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data
