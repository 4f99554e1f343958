"""Collators: turn token ids into training batches (dicts of tensors), independent of the tokenizer class."""
from .clm import CausalLMCollator, PackedCLMCollator, collate_clm, pack_documents, packed_attention_mask, packed_labels
from .mlm import MLMCollator
from .nsp import IS_NEXT, NOT_NEXT, MLMChunkCollator, NSPExampleBuilder, segment_chunks, truncate_pair
from .padding import IGNORE_INDEX, PaddingCollator, pad_sequences
from .seq2seq import Seq2SeqCollator
from .span import SpanCorruptionCollator, random_spans_noise_mask

__all__ = [
    "IGNORE_INDEX", "IS_NEXT", "MLMChunkCollator", "collate_clm", "segment_chunks", "NOT_NEXT", "CausalLMCollator", "MLMCollator", "NSPExampleBuilder",
    "PackedCLMCollator", "PaddingCollator", "Seq2SeqCollator", "SpanCorruptionCollator", "pack_documents", "pad_sequences",
    "packed_attention_mask", "packed_labels", "random_spans_noise_mask", "truncate_pair",
]
