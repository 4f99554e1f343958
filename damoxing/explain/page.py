"""One self-contained HTML page of explanations: highlighted tokens, attention heatmaps and rollout.

    html = render_page([explanation, ...], title="...", model="runs/x/model", n_steps=50, method="gausslegendre")

The template (templates/page.html) is rendered by jinja2 with autoescaping: texts and tokens are escaped.
Heatmaps are matplotlib PNGs embedded as base64, so the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")  # never open a window
from matplotlib.figure import Figure

from .attribution import ImageAttribution, TokenAttribution

TEMPLATES = Path(__file__).parent / "templates"
MAX_LABELLED = 40  # heatmaps of longer texts leave the token names off their axes
POSITIVE, NEGATIVE = (22, 163, 74), (220, 38, 38)  # green for the target, red against it


@dataclass
class Explanation:
    """What the page shows for one text: its attribution and, when recorded, attention maps and rollout."""

    heading: str
    text: str
    attribution: TokenAttribution | None = None
    attention: dict[str, list] = field(default_factory=dict)  # stack -> per layer (H, T, T) arrays
    rollout: object = None  # (T, T) array
    rollout_row: int = 0  # the position whose rollout row is highlighted ([CLS], or the last token)
    error: str = ""  # why it was not explained (an empty row, ...)
    image: object = None  # images: (C, H, W) pixels in [0, 255] as the model saw them (before normalising)
    image_attribution: ImageAttribution | None = None


def display(token: str) -> tuple[str, bool]:
    """(text to show, continues the previous word) of a WordPiece, byte-level BPE or SentencePiece token."""
    if token.startswith("##"):
        return token[2:], True
    if token.startswith(("Ġ", "▁")):
        return " " + token[1:], False
    return token.replace("Ċ", "\\n"), False


def colour(score: float, scale: float) -> str:
    """rgba background: green for a positive score, red for a negative one, opacity |score| / scale (up to .85)."""
    if scale <= 0 or score == 0:
        return "transparent"
    r, g, b = POSITIVE if score > 0 else NEGATIVE
    return f"rgba({r}, {g}, {b}, {min(abs(score) / scale, 1.0) * 0.85:.3f})"


def token_spans(tokens: list[str], scores: list[float], specials: set[int] | None = None, ids=None) -> list[dict]:
    scale = max((abs(s) for s in scores), default=0.0)
    spans = []
    for i, (raw, score) in enumerate(zip(tokens, scores)):
        text, cont = display(raw)
        special = specials is not None and ids is not None and ids[i] in specials
        spans.append({"raw": raw, "text": text, "cont": cont, "score": score, "colour": colour(score, scale)})
        spans[-1]["special"] = special
    return spans


def png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def heatmap_row(maps, tokens: list[str], title: str) -> str:
    """One layer's heads side by side: (H, Tq, Tk) -> a base64 PNG."""
    heads = maps.shape[0]
    fig = Figure(figsize=(2.4 * heads + 0.6, 2.8))
    for h in range(heads):
        ax = fig.add_subplot(1, heads, h + 1)
        ax.imshow(maps[h], cmap="viridis", vmin=0.0)  # each head on its own scale
        ax.set_title(f"{title} head {h}", fontsize=8)
        label_axes(ax, tokens, maps.shape[1], maps.shape[2])
    return png(fig)


def label_axes(ax, tokens: list[str], rows: int, columns: int) -> None:
    if len(tokens) <= MAX_LABELLED and rows == columns == len(tokens):
        ax.set_xticks(range(columns), tokens, rotation=90, fontsize=6)
        ax.set_yticks(range(rows), tokens, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def rollout_png(matrix, tokens: list[str]) -> str:
    fig = Figure(figsize=(4.5, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_title("attention rollout", fontsize=9)
    label_axes(ax, tokens, *matrix.shape)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return png(fig)


def image_png(e: Explanation) -> str:
    """The image, its attributions (summed over channels; green for the class, red against) and, for a ViT, the
    rollout of the class token over the patches."""
    a = e.image_attribution.attributions.sum(0).float().cpu().numpy()  # (H, W)
    panels = 3 if e.rollout is not None else 2
    fig = Figure(figsize=(3.2 * panels, 3.4))
    ax = fig.add_subplot(1, panels, 1)
    image = e.image.float().permute(1, 2, 0).cpu().numpy() / 255  # (H, W, C)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_title("image", fontsize=9)
    ax = fig.add_subplot(1, panels, 2)
    scale = float(abs(a).max()) or 1.0
    ax.imshow(a, cmap="RdYlGn", vmin=-scale, vmax=scale)
    ax.set_title("Integrated Gradients", fontsize=9)
    if e.rollout is not None:
        side = round((e.rollout.shape[-1] - 1) ** 0.5)
        ax = fig.add_subplot(1, panels, 3)
        ax.imshow(e.rollout[0, 1 : 1 + side * side].reshape(side, side), cmap="viridis")
        ax.set_title("rollout from [CLS]", fontsize=9)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return png(fig)


def item_context(e: Explanation, specials: set[int]) -> dict:
    """The template's view of one explanation."""
    item = {"heading": e.heading, "error": e.error, "note": ""}
    if e.image_attribution is not None:
        a = e.image_attribution
        item.update(
            a=a,
            total=float(a.attributions.sum()),
            target_kind="prediction",
            image_png=image_png(e),
            probabilities=[],
            layers=[
                (f"{stack} layer {i}", heatmap_row(maps, [], f"{stack} L{i}"))
                for stack, layers in e.attention.items()
                for i, maps in enumerate(layers)
            ],
        )
        return item
    a = e.attribution
    if e.error or a is None:
        return item
    item.update(
        a=a,
        note=a.note,
        total=sum(a.scores),
        target_kind="prediction" if a.kind == "class" else "next token",
        tokens=token_spans(a.tokens, a.scores, specials, a.ids),
        probabilities=sorted(a.probabilities.items(), key=lambda kv: -kv[1]),
        layers=[
            (f"{stack} layer {i}", heatmap_row(maps, a.tokens, f"{stack} L{i}"))
            for stack, layers in e.attention.items()
            for i, maps in enumerate(layers)
        ],
    )
    if e.rollout is not None:
        item["rollout_tokens"] = token_spans(a.tokens, [float(v) for v in e.rollout[e.rollout_row]])
        item["rollout_from"] = f"token {a.tokens[e.rollout_row]!r} (position {e.rollout_row})"
        item["rollout_png"] = rollout_png(e.rollout, a.tokens)
    return item


def render_page(
    explanations: list[Explanation],
    *,
    title: str,
    model: str,
    n_steps: int,
    method: str,
    specials: set[int] | None = None,
) -> str:
    images = any(e.image_attribution is not None for e in explanations)
    about = (
        "on the pixels, from a black baseline (zeros after normalising), summed over the channels."
        if images
        else "on the token embeddings, from a baseline of pad tokens (special tokens kept); each token's score is "
        "the sum of its embedding's attributions."
    )
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env.get_template("page.html").render(
        title=title,
        model=model,
        n_steps=n_steps,
        method=method,
        about=about,
        hover="" if images else "(hover a token for its score)",
        items=[item_context(e, specials or set()) for e in explanations],
    )
