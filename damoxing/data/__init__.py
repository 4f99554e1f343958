"""Everything between a user's files and a batch of tensors: readers, cleaning, splits, collators."""

from .buckets import LengthBucketSampler
from .bundled import bundled_path
from .clean import clean_corpus, normalize_text
from .collators import (
    IGNORE_INDEX,
    MLMCollator,
    PackedCLMCollator,
    PaddingCollator,
    SpanCorruptionCollator,
    pack_documents,
)
from .labels import LabelMap
from .pii import find_pii, redact_pii
from .readers import ReadSummary, RecordReader, load_labelled, read_records, read_texts
from .sentences import split_sentences
from .splits import buffer_shuffle, shuffled, stream_split, train_val_split

__all__ = [
    "IGNORE_INDEX",
    "LabelMap",
    "LengthBucketSampler",
    "MLMCollator",
    "PackedCLMCollator",
    "PaddingCollator",
    "ReadSummary",
    "RecordReader",
    "SpanCorruptionCollator",
    "buffer_shuffle",
    "bundled_path",
    "clean_corpus",
    "find_pii",
    "load_labelled",
    "normalize_text",
    "pack_documents",
    "read_records",
    "read_texts",
    "redact_pii",
    "shuffled",
    "split_sentences",
    "stream_split",
    "train_val_split",
]
