"""Looking inside models: attention maps and rollout, Integrated Gradients attributions, and explanation pages."""

from .attention import AttentionMaps, recording, rollout
from .attribution import ImageAttribution, TokenAttribution, attribute_image, attribute_text

__all__ = [
    "AttentionMaps",
    "ImageAttribution",
    "TokenAttribution",
    "attribute_image",
    "attribute_text",
    "recording",
    "rollout",
]
