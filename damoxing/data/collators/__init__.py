"""Collators: turn token ids into training batches (dicts of tensors), independent of the tokenizer class."""
from .clm import CausalLMCollator, PackedCLMCollator, collate_clm, pack_documents, packed_attention_mask, packed_labels
from .mlm import MLMCollator
from .nsp import IS_NEXT, NOT_NEXT, MLMChunkCollator, segment_chunks
from .padding import IGNORE_INDEX, PaddingCollator, pad_sequences
from .span import SpanCorruptionCollator, random_spans_noise_mask

__all__ = [
    "IGNORE_INDEX", "IS_NEXT", "MLMChunkCollator", "collate_clm", "segment_chunks", "NOT_NEXT", "CausalLMCollator",
    "MLMCollator", "PackedCLMCollator", "PaddingCollator", "SpanCorruptionCollator", "pack_documents", "pad_sequences",
    "packed_attention_mask", "packed_labels", "random_spans_noise_mask",
]
