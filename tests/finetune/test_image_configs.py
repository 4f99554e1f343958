"""The example Fashion-MNIST configs load, and their models keep to the issue's parameter limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from damoxing.data.processors import ImageProcessor
from damoxing.finetune.config import load_finetune_config
from damoxing.models import create_model, model_config
from damoxing.tasks import get_task

CONFIGS = Path(__file__).resolve().parents[2] / "damoxing" / "configs"
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
LIMITS = {"fashion-vit.yaml": 400_000, "fashion-mlp.yaml": None, "fashion-vgg.yaml": None}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_fashion_config_loads_and_builds(name):
    if not FASHION.is_file():
        pytest.skip(f"{FASHION} absent: apt-get install -y dataset-fashion-mnist")
    cfg = load_finetune_config(CONFIGS / name)
    model = create_model(model_config(cfg.model))
    assert LIMITS[name] is None or model.num_parameters() <= LIMITS[name]
    processor = get_task(cfg.finetune.task).preprocessor(None, model, cfg.transforms, [])
    assert isinstance(processor, ImageProcessor) and processor.size == 28 and processor.channels == 1
    assert len(cfg.data.label_names) == 10


def test_the_small_cnn_preset_stays_under_100k_parameters():
    model = create_model(model_config({"preset": "vgg-mini", "head": "sequence", "num_labels": 10}))
    assert model.num_parameters() <= 100_000
