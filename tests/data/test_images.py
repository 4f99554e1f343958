"""Image readers, transforms and processors: labels stay with their images, randomness comes from the
example's seed only, and bad input is one DataError naming the file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from damoxing.data.images import decode, read_images
from damoxing.data.labels import LabelMap
from damoxing.data.processors import ImageProcessor
from damoxing.data.transforms import RANDAUGMENT_OPS, _op, mixup, rand_augment
from damoxing.errors import DataError
from damoxing.tasks import get_task
from damoxing.training.batches import Batches, example_generator


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, stem: str = "train") -> Path:
    path = folder / f"{stem}-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{stem}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())
    return path


def labelled_images(n: int = 12, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Image i is a flat grey square of intensity 20 * label + 15: its pixels say its label."""
    labels = np.arange(n) % 4
    return np.stack([np.full((side, side), 20 * y + 15, np.uint8) for y in labels]), labels


def class_folder(root: Path) -> Path:
    for label, color in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20 + i, 10), color).save(root / label / f"{i}.{'png' if i else 'jpg'}")
    return root


# ---------------------------------------------------------------------- readers
def test_class_folder_is_read_lazily_with_folder_names_as_labels(tmp_path):
    records = list(read_images(class_folder(tmp_path / "pets")))
    assert [r["label"] for r in records] == ["cat"] * 3 + ["dog"] * 3
    assert all(isinstance(r["image"], Path) for r in records)  # decoded only when a batch is built
    image = decode(records[4]["image"], records[4]["source"])
    assert image.shape == (3, 10, 21) and image.dtype == torch.uint8 and image[1].float().mean() > 150
    assert decode(records[4]["image"], records[4]["source"], channels=1).shape == (1, 10, 21)
    unlabelled = list(read_images(tmp_path / "pets", with_labels=False))
    assert len(unlabelled) == 6 and all("label" not in r for r in unlabelled)


def test_idx_files_with_label_names(tmp_path):
    images, labels = labelled_images()
    path = write_idx(tmp_path, images, labels)
    names = ["zero", "one", "two", "three"]
    records = list(read_images(path, label_names=names, labels=LabelMap(names)))
    assert [r["label"] for r in records] == labels.tolist()
    assert records[5]["source"] == f"{path}#5" and np.array_equal(records[5]["image"], images[5])


def test_pixel_csv_with_and_without_header(tmp_path):
    images, labels = labelled_images(4, side=4)
    rows = [",".join(map(str, im.flatten().tolist() + [y])) for im, y in zip(images, labels)]
    (tmp_path / "plain.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "named.csv").write_text(",".join([f"p{i}" for i in range(16)] + ["digit"]) + "\n" + "\n".join(rows))
    plain = list(read_images(tmp_path / "plain.csv", label_column="last"))
    named = list(read_images(tmp_path / "named.csv", label_column="digit"))
    for records in (plain, named):
        assert [r["label"] for r in records] == [str(y) for y in labels]
        assert all(np.array_equal(r["image"], im) for r, im in zip(records, images))
    assert len(list(read_images(tmp_path / "plain.csv", label_column="last", with_labels=False))) == 4
    with pytest.raises(DataError, match="plain.csv: the file has no header row"):
        list(read_images(tmp_path / "plain.csv", label_column="label"))


# ---------------------------------------------------------------------- bad input: one message naming the file
def test_a_corrupt_image_is_named(tmp_path):
    root = class_folder(tmp_path / "pets")
    (root / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        list(read_images(root))
    assert len(list(read_images(root, skip_bad=True))) == 6
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "dog" / "cut.png")
    data = (root / "dog" / "cut.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(data[: len(data) // 2])  # a valid header, the pixels cut short
    records = [r for r in read_images(root, skip_bad=True) if r["source"].endswith("cut.png")]
    assert len(records) == 1  # the header reads: the damage shows when the batch is decoded
    with pytest.raises(DataError, match=r"dog/cut\.png: not a readable image"):
        ImageProcessor(size=8).pixels(records)


def test_an_empty_class_folder_is_named(tmp_path):
    root = class_folder(tmp_path / "pets")
    (root / "bird").mkdir()
    (root / "bird" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"pets/bird: empty class folder"):
        list(read_images(root))


def test_mixed_sizes_without_a_resize_name_the_file(tmp_path):
    records = list(read_images(class_folder(tmp_path / "pets")))  # widths 20, 21, 22
    with pytest.raises(DataError, match=r"cat/1\.png: image is 21x10 with 3 channels but .*cat/0\.jpg is 20x10"):
        ImageProcessor(size=0).pixels(records)
    assert ImageProcessor(size=12).pixels(records).shape == (6, 3, 12, 12)


def test_wrong_idx_magic_and_truncated_idx_are_named(tmp_path):
    images, labels = labelled_images()
    path = write_idx(tmp_path, images, labels)
    labels_file = tmp_path / "train-labels-idx1-ubyte.gz"
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte\.gz: not an IDX file of images: magic number "
        r"0x00000801, expected 0x00000803",
    ):
        list(read_images(labels_file))
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 12, 16, 16) + b"\0" * 100)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: the header promises .* truncated"):
        list(read_images(path))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 1, 2, 2) + b"\0" * 4)
    with pytest.raises(DataError, match="no labels file beside it"):
        list(read_images(tmp_path / "t10k-images-idx3-ubyte"))


# ---------------------------------------------------------------------- transforms
AUGMENT = ImageProcessor(size=16, channels=1, mean=(0.0,), std=(1.0,), crop_padding=3, flip=True)


def test_labels_stay_with_their_images_through_shuffled_augmented_batches(tmp_path):
    images, labels = labelled_images(40)
    task = get_task("image_classification")
    records, label_map = task.label_map(list(read_images(write_idx(tmp_path, images, labels))))
    batches = Batches(task.examples(AUGMENT, records, None), task.collate(AUGMENT), 8, seed=3, shuffle=True)
    seen = 0
    for epoch in range(2):
        for batch in batches.batches(epoch):
            centre = batch["pixel_values"][:, 0, 8, 8] * 255  # crops of <= 3 pixels keep the centre inside the image
            expected = torch.tensor([20 * int(label_map.names[y]) + 15 for y in batch["labels"]], dtype=centre.dtype)
            assert torch.allclose(centre, expected, atol=1e-3)
            seen += len(centre)
    assert seen == 80


def test_augmentation_depends_only_on_the_example_seed():
    rng = np.random.default_rng(0)
    records = [
        {"image": rng.integers(0, 256, (16, 16), dtype=np.uint8), "source": f"x#{i}", "label": 0} for i in range(6)
    ]
    processor = ImageProcessor(size=16, crop_padding=2, flip=True, randaugment=2, randaugment_magnitude=15)

    def gens(indices, seed=0, epoch=1):
        return [example_generator(seed, epoch, i) for i in indices]

    together = processor.pixels(records, gens(range(6)))
    apart = torch.cat([processor.pixels(records[i : i + 1], gens([i])) for i in (0, 1, 2, 3, 4, 5)])
    assert torch.equal(together, apart)  # the same crop, flip and operations in any batch
    assert torch.equal(together, processor.pixels(records, gens(range(6))))
    assert not torch.equal(together, processor.pixels(records, gens(range(6), epoch=2)))
    plain = processor.pixels(records)  # evaluation: no augmentation
    assert torch.equal(plain, ImageProcessor(size=16).pixels(records))


def test_every_randaugment_op_keeps_shape_and_range():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 12, 12, generator=g)
    for name in RANDAUGMENT_OPS:
        out = _op(name, image, 0.7, torch.Generator().manual_seed(1))
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1, name
    assert torch.equal(_op("identity", image, 1.0, g), image)
    assert torch.allclose(_op("solarize", image, 1.0, g), 1 - image)  # threshold 0: every pixel inverted
    again = [rand_augment(image, 3, 9, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*again)


def test_mixup_weights_and_partners_come_from_the_examples():
    x = torch.arange(4.0)[:, None, None, None].expand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 3])
    gens = [example_generator(0, 0, i) for i in range(4)]
    mixed, partner, w = mixup(x, y, 0.4, gens)
    assert (w >= 0.5).all() and (w <= 1).all()
    assert torch.allclose(mixed[:, 0, 0, 0], w * y + (1 - w) * partner)  # image i's value is its label
    again = mixup(x, y, 0.4, [example_generator(0, 0, i) for i in range(4)])
    assert torch.equal(again[0], mixed) and torch.equal(again[1], partner)
