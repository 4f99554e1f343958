"""Dynamic padding: pad each batch to its own longest sequence, not to a fixed length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ...layers.losses import IGNORE_INDEX

Example = Sequence[int] | torch.Tensor | Mapping[str, object]


def as_ids(value: object) -> list[int]:
    """A list of ints from a list, tuple or 1-D tensor."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).tolist()
    return [int(v) for v in value]  # type: ignore[union-attr]


def example_ids(example: Example, key: str = "input_ids") -> list[int]:
    """The token ids of an example: a plain sequence of ids, or a dict with `input_ids`."""
    if isinstance(example, Mapping):
        return as_ids(example[key])
    return as_ids(example)


def padded_length(longest: int, pad_to_multiple_of: int | None) -> int:
    if pad_to_multiple_of:
        return -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_value: int, pad_to_multiple_of: int | None = None, side: str = "right"
) -> torch.Tensor:
    """Stack id lists into a (B, L) long tensor, L = the longest (rounded up to a multiple if asked)."""
    length = padded_length(max((len(s) for s in sequences), default=0), pad_to_multiple_of)
    out = torch.full((len(sequences), length), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            values = torch.as_tensor(list(seq), dtype=torch.long)
            if side == "right":
                out[row, : len(seq)] = values
            else:
                out[row, length - len(seq) :] = values
    return out


def attention_mask_for(sequences: Sequence[Sequence[int]], length: int, side: str = "right") -> torch.Tensor:
    """(B, L) ints: 1 on real tokens, 0 on padding."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    positions = torch.arange(length)
    if side == "right":
        return (positions[None, :] < lengths[:, None]).long()
    return (positions[None, :] >= (length - lengths)[:, None]).long()


class PaddingCollator:
    """Batch labelled examples (like HF `DataCollatorWithPadding`).

    Each example is a dict with `input_ids`, optionally `token_type_ids`, and a label under `label` or
    `labels`: an int (sequence classification, gives `labels` (B,)) or a list (token classification,
    padded with -100). Returns `input_ids`, `attention_mask`, [`token_type_ids`], [`labels`].
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None, padding_side: str = "right"):
        if padding_side not in ("right", "left"):
            raise ValueError('padding_side must be "right" or "left"')
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_side = padding_side

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        ids = [example_ids(e) for e in examples]
        input_ids = pad_sequences(ids, self.pad_id, self.pad_to_multiple_of, self.padding_side)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask_for(ids, input_ids.shape[1], self.padding_side),
        }
        first = examples[0]
        if isinstance(first, Mapping) and "token_type_ids" in first:
            types = [example_ids(e, "token_type_ids") for e in examples]
            batch["token_type_ids"] = pad_sequences(types, 0, self.pad_to_multiple_of, self.padding_side)
        labels = collate_labels(examples, self.pad_to_multiple_of, self.padding_side)
        if labels is not None:
            batch["labels"] = labels
        return batch


def collate_labels(
    examples: Sequence[Example], pad_to_multiple_of: int | None = None, side: str = "right"
) -> torch.Tensor | None:
    """The labels of dict examples (under `labels` or `label`), None when they have none: ints give (B,) longs,
    floats (B,) floats, lists a (B, L) tensor padded with IGNORE_INDEX."""
    first = examples[0]
    label_key = next((k for k in ("labels", "label") if isinstance(first, Mapping) and k in first), None)
    if label_key is None:
        return None
    labels = [e[label_key] for e in examples]  # type: ignore[index]
    if isinstance(labels[0], (int, float)) or (isinstance(labels[0], torch.Tensor) and labels[0].dim() == 0):
        dtype = torch.float if isinstance(labels[0], float) else torch.long
        return torch.tensor([float(x) if dtype == torch.float else int(x) for x in labels], dtype=dtype)
    return pad_sequences([as_ids(x) for x in labels], IGNORE_INDEX, pad_to_multiple_of, side)
