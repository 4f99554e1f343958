"""Integrated Gradients attributions through captum, with captum's convergence delta on every result.

    result = attribute_text(model, tokenizer, "great phone", labels=["neg", "pos"], n_steps=200)
    result.tokens, result.scores, result.delta     # one score per token; sum(scores) ~ output - baseline_output

Text models are attributed on the token embedding layer (captum's LayerIntegratedGradients): the path runs from
a baseline where every word piece is the pad token (special tokens such as [CLS] and [SEP] kept) to the text.
Position and segment embeddings are the same at both ends, so each token's score is the sum over its
embedding's coordinates and the scores add up to f(text) - f(baseline) (completeness), up to `delta`.

What f is: a classifier's logit of the target class (by default the predicted class); a causal language model's
log-probability of the target next token (by default the most likely one) after the text. Image models are
attributed on the pixels (captum's IntegratedGradients) from a black baseline (zeros in normalised space).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

from ..errors import UserError
from ..models import Decoder, Encoder

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


@dataclass(frozen=True)
class TokenAttribution:
    """What a text's tokens contributed to one output of the model."""

    tokens: list[str]  # the tokenizer's pieces, special tokens included
    ids: list[int]
    scores: list[float]  # per token: the sum of its embedding's attributions
    kind: str  # "class" (a classifier's label) | "next-token"
    target: int  # class index, or the id of the next token
    target_name: str  # label name, or the next token's text
    probability: float  # of the target
    output: float  # f(text): the target's logit (classification) or log-probability (next token)
    baseline_output: float  # f(baseline)
    delta: float  # captum's convergence delta: sum(scores) - (output - baseline_output)
    probabilities: dict[str, float] = field(default_factory=dict)  # classification: every class
    note: str = ""  # e.g. that the text was cut

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ImageAttribution:
    attributions: torch.Tensor  # (C, H, W), the shape of the image
    target: int
    target_name: str
    probability: float
    output: float  # the target's logit for the image
    baseline_output: float
    delta: float


def text_kind(model: nn.Module) -> str:
    """What a text explanation of `model` attributes: 'classification' or 'next-token'; a UserError otherwise."""
    head = getattr(getattr(model, "config", None), "head", None)
    if isinstance(model, (Encoder, Decoder)) and head == "sequence":
        return "class"
    if isinstance(model, Decoder) and head == "lm":
        return "next-token"
    raise UserError(
        f"this model has a {head!r} head: explanations need a text classifier (fine-tune one with damoxing "
        "finetune) or a causal language model"
    )


def embedding_layer(model: nn.Module) -> nn.Embedding:
    """The token embedding table the attributions are taken on."""
    return model.embed.tokens if isinstance(model, Encoder) else model.embed


def baseline_ids(ids: torch.Tensor, tokenizer, model: nn.Module) -> torch.Tensor:
    """(1, T) ids with every non-special token replaced by the pad token (eos, or 0, when there is none)."""
    pad = next(
        (i for i in (tokenizer.pad_id, getattr(model.config, "pad_id", None), tokenizer.eos_id) if i is not None), 0
    )
    special = torch.tensor([int(i) in tokenizer.special_ids for i in ids[0]], device=ids.device)
    return torch.where(special, ids, torch.full_like(ids, pad))  # (1, T)


def encode_text(tokenizer, text: str, max_length: int, cut: bool) -> tuple[dict, str]:
    """The model inputs for one text (batch of 1) and a note; a UserError for an empty text, or an over-long one
    unless `cut`."""
    if not text.strip():
        raise UserError("the text is empty: give a text to explain")
    n = len(tokenizer.encode(text))
    note = ""
    if n > max_length:
        if not cut:
            raise UserError(
                f"the text is {n} tokens long, more than the {max_length} this model reads; shorten it "
                "(or give --max-length, up to the model's positions)"
            )
        note = f"cut from {n} to {max_length} tokens (the most this model reads)"
    batch = tokenizer(text, max_length=max_length, truncation=True, padding=False)
    return batch, note


def token_limit(model: nn.Module, tokenizer, max_length: int | None) -> int:
    """The most tokens a text may have: `max_length` (or the tokenizer's), never more than the model's positions."""
    positions = getattr(model.config, "max_positions", None) or 512
    limit = max_length or tokenizer.model_max_length or positions
    if limit > positions:
        raise UserError(f"--max-length {limit} is more than the model's {positions} positions; give at most that")
    return limit


def attribute_text(
    model: nn.Module,
    tokenizer,
    text: str,
    *,
    labels: list[str] | None = None,
    target: int | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    max_length: int | None = None,
    cut: bool = False,
    internal_batch_size: int | None = 64,
) -> TokenAttribution:
    """Integrated Gradients of one text on `model`'s token embeddings (see the module docstring)."""
    kind = text_kind(model)
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if n_steps < 2:
        raise UserError(f"n_steps must be at least 2, not {n_steps}")
    model.eval()
    batch, note = encode_text(tokenizer, text, token_limit(model, tokenizer, max_length), cut)
    device = model.device
    ids = batch["input_ids"].to(device)  # (1, T)
    extra = (batch["attention_mask"].to(device),)
    if isinstance(model, Encoder) and "token_type_ids" in batch:
        extra += (batch["token_type_ids"].to(device),)

    def forward(input_ids, attention_mask, token_type_ids=None):  # (N, T) -> (N, labels) logits | (N, V) log-probs
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = model.forward_features(input_ids, attention_mask, **kwargs)  # (N, T, C)
        if kind == "class":
            return model.forward_head(hidden, attention_mask)  # (N, labels)
        return model.head(hidden[:, -1:])[:, 0].log_softmax(-1)  # (N, V): the next token after the text

    base = baseline_ids(ids, tokenizer, model)
    with torch.no_grad():
        out = forward(ids, *extra)[0]  # (labels | V,)
        base_out = forward(base, *extra)[0]
    probs = out.softmax(-1) if kind == "class" else out.exp()
    target = int(out.argmax()) if target is None else int(target)
    if not 0 <= target < out.shape[-1]:
        raise UserError(f"target {target} is out of range: the model has {out.shape[-1]} outputs")
    ig = LayerIntegratedGradients(forward, embedding_layer(model))
    attr, delta = ig.attribute(
        ids,
        baselines=base,
        target=target,
        additional_forward_args=extra,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )  # (1, T, C), (1,)
    if kind == "class":
        names = list(labels) if labels else [f"LABEL_{i}" for i in range(out.shape[-1])]
        target_name = names[target]
        probabilities = {n: float(p) for n, p in zip(names, probs)}
    else:
        target_name, probabilities = tokenizer.decode([target], skip_special_tokens=False), {}
    return TokenAttribution(
        tokens=[tokenizer.id_to_token(int(i)) or "" for i in ids[0]],
        ids=ids[0].tolist(),
        scores=attr.sum(-1)[0].tolist(),
        kind=kind,
        target=target,
        target_name=target_name,
        probability=float(probs[target]),
        output=float(out[target]),
        baseline_output=float(base_out[target]),
        delta=float(delta[0]),
        probabilities=probabilities,
        note=note,
    )


def attribute_image(
    model: nn.Module,
    pixel_values: torch.Tensor,  # (1, C, H, W) normalised, as the model's processor makes them
    *,
    labels: list[str] | None = None,
    target: int | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = 32,
) -> ImageAttribution:
    """Integrated Gradients of one image's pixels from a black (all-zero) baseline, for the target class."""
    if getattr(model.config, "head", "sequence") != "sequence":
        raise UserError("image explanations need an image classifier (a 'sequence' head)")
    model.eval()
    x = pixel_values.to(model.device)
    base = torch.zeros_like(x)
    with torch.no_grad():
        out, base_out = model(x)[0], model(base)[0]  # (labels,)
    target = int(out.argmax()) if target is None else int(target)
    attr, delta = IntegratedGradients(model).attribute(
        x,
        baselines=base,
        target=target,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )  # (1, C, H, W), (1,)
    names = list(labels) if labels else [f"LABEL_{i}" for i in range(out.shape[-1])]
    return ImageAttribution(
        attributions=attr[0].detach(),
        target=target,
        target_name=names[target],
        probability=float(out.softmax(-1)[target]),
        output=float(out[target]),
        baseline_output=float(base_out[target]),
        delta=float(delta[0]),
    )
