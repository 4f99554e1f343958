"""The playground's explain view: POST /v1/explain on a served classifier (the handler in serve/app.py is a shim).

Bounded: one text, at most MAX_CHARACTERS characters and the model's max_length tokens (longer is refused), and
2 to MAX_STEPS Integrated Gradients steps; the answer has the tokens, their scores and captum's delta.
"""

from __future__ import annotations

from .attribution import attribute_text

MAX_CHARACTERS = 20_000
MAX_STEPS = 200
DEFAULT_STEPS = 32


def explain_request(served, text: str, steps: int) -> dict:
    """The attribution of `text` for the class `served`'s classifier predicts (a UserError for bad input)."""
    a = attribute_text(
        served.model,
        served.tokenizer,
        text,
        labels=served.meta["labels"],
        n_steps=steps,
        max_length=served.meta.get("max_length"),
    )
    return {
        "tokens": a.tokens,
        "scores": a.scores,
        "label": a.target_name,
        "probability": a.probability,
        "probabilities": a.probabilities,
        "output": a.output,
        "baseline_output": a.baseline_output,
        "delta": a.delta,
        "steps": steps,
    }
