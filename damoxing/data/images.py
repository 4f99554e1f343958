"""Image files into records, lazily: `{"image", "source"}` plus `"label"` when the data has labels.

`read_images(paths, ...)` takes, for each path:

    a folder         class sub-folders of images (sub-folder name = label); without labels, every image inside
    an image file    .png .jpg .jpeg .bmp .gif .webp .tif .tiff (one record, no label)
    .csv / .tsv      one image per row of pixel values 0-255 (a header row is optional), the label in
                     `label_column` (a header name, or "first" / "last" for files without a header)
    anything else    an IDX file (MNIST, Fashion-MNIST; optionally .gz): `*-images-idx3-ubyte` with its
                     labels in the `*-labels-idx1-ubyte` file beside it

A record's "image" is a file path (decoded only when its batch is built) or an array of pixels (IDX and
CSV rows, which hold raw pixels already); "source" names it in messages (`file`, `file#index`, `file:line`).
`decode(image, source, channels)` gives the pixels as a (C, H, W) uint8 tensor.

Bad input raises one DataError naming the file: an unreadable or corrupt image, an empty class folder, an
IDX file with the wrong magic number or size, a CSV row that is not pixels.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .formats import iter_lines, open_binary, strip_suffixes
from .labels import LabelMap

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PIXEL_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801  # unsigned bytes, 3 dimensions / 1 dimension
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# ---------------------------------------------------------------------- decoding
def decode(image, source: str, channels: int | None = None) -> torch.Tensor:
    """Pixels of a record's image as (C, H, W) uint8; `channels` 1 (grey) or 3 (RGB), None: as stored."""
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image))
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
        return convert_channels(x, channels)
    from PIL import Image

    try:
        with Image.open(image) as im:
            mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if im.mode in GREY_MODES else "RGB")
            pixels = np.asarray(im.convert(mode))  # decodes the whole file: a truncated one fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{source}: not a readable image ({e}); replace or remove the file") from None
    x = torch.from_numpy(pixels.copy())
    return x[None] if x.dim() == 2 else x.permute(2, 0, 1)


def convert_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(C, H, W) uint8 to 1 channel (ITU-R 601 luma, as Pillow's "L") or 3 (grey repeated); None: unchanged."""
    if channels is None or x.shape[0] == channels:
        return x
    if channels == 3 and x.shape[0] == 1:
        return x.expand(3, -1, -1).contiguous()
    if channels == 1 and x.shape[0] in (3, 4):
        weights = torch.tensor([299, 587, 114], dtype=torch.int32)[:, None, None]
        luma = (x[:3].to(torch.int32) * weights).sum(0, keepdim=True) + 500  # rounded, as Pillow
        return luma.div(1000, rounding_mode="floor").to(torch.uint8)
    if channels == 3 and x.shape[0] == 4:
        return x[:3].contiguous()
    raise DataError(f"cannot turn a {x.shape[0]}-channel image into {channels} channels")


# ---------------------------------------------------------------------- readers
def read_images(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    label_column: str = "label",
    labels: LabelMap | None = None,
    label_names: Sequence[str] = (),
    with_labels: bool = True,
    skip_bad: bool = False,
) -> Iterator[dict]:
    """Records of every path, lazily. `labels`: encode labels to ids (unknown labels are errors);
    `label_names`: names of integer labels 0..n-1 (IDX files, CSV labels)."""
    many = isinstance(paths, (list, tuple))
    for path in (Path(p) for p in (paths if many else [paths])):
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_dir():
            records = read_folder(path, with_labels, skip_bad)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            records = iter([{"image": path, "source": str(path)}])
        elif strip_suffixes(path) in PIXEL_TABLE_SUFFIXES:
            records = read_pixel_table(path, label_column, with_labels)
        else:
            records = read_idx_images(path, with_labels)
        for record in records:
            if "label" in record:
                record["label"] = _label(record, label_names, labels)
            yield record


def _label(record: dict, names: Sequence[str], labels: LabelMap | None):
    label = record["label"]
    if names:
        try:
            label = names[int(label)]
        except (ValueError, IndexError):
            raise DataError(
                f"{record['source']}: label {label!r} is not an integer below {len(names)}, so "
                "data.label_names cannot name it"
            ) from None
    if labels is None:
        return label
    if label not in labels:
        raise DataError(f"{record['source']}: unknown label {label!r}; the model knows {labels.names}")
    return labels.encode(label)


def read_folder(folder: Path, with_labels: bool, skip_bad: bool = False) -> Iterator[dict]:
    """Class sub-folders of images (label = sub-folder name), or, without labels, every image below."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not with_labels:
        files = sorted(p for p in folder.rglob("*") if is_image_file(p))
        if not files:
            raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
        yield from _checked(files, None, skip_bad)
        return
    if not classes:
        raise DataError(f"{folder}: no class sub-folders; put each class's images in folder/<label>/")
    for class_dir in classes:
        files = sorted(p for p in class_dir.iterdir() if is_image_file(p))
        if not files:
            raise DataError(
                f"{class_dir}: empty class folder (no {', '.join(sorted(IMAGE_SUFFIXES))} files); "
                "add images or remove the folder"
            )
        yield from _checked(files, class_dir.name, skip_bad)


def _checked(files: list[Path], label: str | None, skip_bad: bool) -> Iterator[dict]:
    """Records of image files whose header Pillow reads (cheap: the pixels are decoded later)."""
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as im:
                im.size  # noqa: B018  (the header is parsed on open)
        except (OSError, SyntaxError, ValueError) as e:
            if skip_bad:
                continue
            raise DataError(
                f"{file}: not a readable image ({e}); replace or remove the file, or skip bad files with --skip-bad"
            ) from None
        yield {"image": file, "source": str(file), **({"label": label} if label is not None else {})}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array of unsigned bytes (optionally gzip-compressed), checked against `magic`."""
    try:
        with open_binary(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the file ({e})") from None
    found = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    if found != magic:
        what = "images" if magic == IDX_IMAGES else "labels"
        shown = f"0x{found:08x}" if found is not None else "none (the file is shorter than 4 bytes)"
        raise DataError(
            f"{path}: not an IDX file of {what}: magic number {shown}, expected 0x{magic:08x} "
            "(MNIST-style *-images-idx3-ubyte / *-labels-idx1-ubyte, optionally .gz)"
        )
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    size = 4 + 4 * ndim + math.prod(dims)
    if len(data) != size:
        raise DataError(
            f"{path}: the header promises {' x '.join(map(str, dims))} bytes of data but the file "
            f"holds {len(data) - 4 - 4 * ndim}; it is truncated or corrupt, download it again"
        )
    return np.frombuffer(bytearray(data), np.uint8, offset=4 + 4 * ndim).reshape(dims)  # writable: torch shares it


def labels_path(images: Path) -> Path:
    """train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz (also images.idx3 -> labels.idx1)."""
    return images.with_name(images.name.replace("images", "labels").replace("idx3", "idx1"))


def read_idx_images(path: Path, with_labels: bool) -> Iterator[dict]:
    images = read_idx(path, IDX_IMAGES)  # (N, H, W)
    if not with_labels:
        for i in range(len(images)):
            yield {"image": images[i], "source": f"{path}#{i}"}
        return
    label_file = labels_path(path)
    if label_file == path or not label_file.is_file():
        raise DataError(
            f"{path}: no labels file beside it (looked for {label_file.name}); IDX labels come in "
            "a *-labels-idx1-ubyte file next to the images"
        )
    labels = read_idx(label_file, IDX_LABELS)
    if len(labels) != len(images):
        raise DataError(f"{label_file}: {len(labels)} labels for {len(images)} images in {path.name}")
    for i in range(len(images)):
        yield {"image": images[i], "source": f"{path}#{i}", "label": str(int(labels[i]))}


def read_pixel_table(path: Path, label_column: str, with_labels: bool = True) -> Iterator[dict]:
    """Rows of pixel values 0-255: square grey images (side x side values) or RGB ones (side x side x 3,
    channels last as numpy's reshape of an (H, W, 3) array).

    A first row that is not all numbers is the header. Without a header `label_column` must be "first" or
    "last"; with one it may also be a column name. Without labels, a label column is dropped when the
    header names it (or, in a file without a header, when the row is one value longer than an image).
    """
    delimiter = PIXEL_TABLE_SUFFIXES[strip_suffixes(path)]
    header, label_at, shape = None, -1, None
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        fields = line.split(delimiter)
        if header is None and number == 1 and not _numeric(fields):
            header = [f.strip().strip('"').lstrip("\ufeff") for f in fields]
            continue
        where = f"{path}:{number}"
        if label_at == -1:
            label_at = _label_index(label_column, header, len(fields), path, with_labels)
        label = fields[label_at] if label_at is not None and label_at < len(fields) else None
        values = _pixels(fields[:label_at] + fields[label_at + 1 :] if label_at is not None else fields, where)
        if shape is None:
            shape = _image_shape(len(values), where)
        elif len(values) != math.prod(shape):
            raise DataError(f"{where}: {len(values)} pixel values, the first row has {math.prod(shape)}")
        record = {"image": values.reshape(shape), "source": where}
        if with_labels and label is not None:
            record["label"] = label.strip().strip('"')
        yield record


def _numeric(fields: list[str]) -> bool:
    try:
        np.array(fields, dtype=np.float64)
    except ValueError:
        return False
    return True


def _label_index(label_column: str, header: list[str] | None, width: int, path: Path, with_labels: bool) -> int | None:
    """Where the label sits in a row (None: no label column)."""
    if not with_labels:
        if header is not None:
            return header.index(label_column) if label_column in header else None
        if label_column not in ("first", "last") or _is_image_size(width):
            return None
    if label_column in ("first", "last"):
        return 0 if label_column == "first" else width - 1
    if header is None:
        raise DataError(
            f"{path}: the file has no header row, so the label column cannot be {label_column!r}; "
            "set data.label_column (--label-column) to 'first' or 'last'"
        )
    if label_column not in header:
        raise DataError(
            f"{path}:1: no column {label_column!r} in the header; set data.label_column "
            f"(--label-column) to one of {header[:3]}..., or 'first' / 'last'"
        )
    return header.index(label_column)


def _pixels(fields: list[str], where: str) -> np.ndarray:
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        raise DataError(f"{where}: not a row of pixel values (numbers 0-255)") from None
    if values.size == 0 or (values % 1).any() or values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must be whole numbers 0-255")
    return values.astype(np.uint8)


def _is_image_size(n: int) -> bool:
    return math.isqrt(n) ** 2 == n or (n % 3 == 0 and math.isqrt(n // 3) ** 2 * 3 == n)


def _image_shape(n: int, where: str) -> tuple[int, ...]:
    side = math.isqrt(n)
    if side * side == n:
        return (side, side)
    side = math.isqrt(n // 3)
    if n % 3 == 0 and side * side * 3 == n:
        return (side, side, 3)
    raise DataError(
        f"{where}: {n} pixel values are neither a square grey image (side x side) nor a square "
        "RGB one (3 x side x side)"
    )
