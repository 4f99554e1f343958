"""Lighter models: quantization, distillation, pruning and ONNX export.

    quantize.py   int8 / int4 / dynamic-int8 layers (drop-in nn.Module swaps) and quantize(model, method)
    distill.py    a student from every other teacher layer (DistilBERT) and the distillation loss
    prune.py      unstructured magnitude pruning and structured attention-head pruning (heads removed)
    export.py     ONNX export with dynamic batch and sequence axes, checked with onnxruntime

GGUF blocks (Q8_0, Q4_0, Q4_1) are mapped onto the quantized layers by damoxing/io/gguf.py; the
distillation objective is the `Distillation` task in damoxing/tasks/distill.py. Commands: `damoxing
quantize | distil | prune | export` (damoxing/recipes/compress.py, damoxing/recipes/distill.py).
"""
