"""Collators: turn token ids into training batches (dicts of tensors), independent of the tokenizer class."""

from .clm import PackedCLMCollator, collate_clm, pack_documents, packed_labels
from .mlm import MLMCollator
from .nsp import IS_NEXT, NOT_NEXT, MLMChunkCollator, segment_chunks
from .packing import PackingCollator, pack_rows, packed_tokens, padded_tokens
from .padding import IGNORE_INDEX, PaddingCollator, pad_sequences
from .seq2seq import Seq2SeqCollator
from .span import SpanCorruptionCollator, random_spans_noise_mask

__all__ = [
    "IGNORE_INDEX",
    "IS_NEXT",
    "NOT_NEXT",
    "MLMChunkCollator",
    "MLMCollator",
    "PackedCLMCollator",
    "PackingCollator",
    "PaddingCollator",
    "Seq2SeqCollator",
    "SpanCorruptionCollator",
    "collate_clm",
    "pack_documents",
    "pack_rows",
    "packed_labels",
    "packed_tokens",
    "pad_sequences",
    "padded_tokens",
    "random_spans_noise_mask",
    "segment_chunks",
]
