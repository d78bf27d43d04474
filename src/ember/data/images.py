"""Images from disk and arrays, ready for a model: float32 (N, H, W, C) in [0, 1].

Sources: a folder with one subfolder per class (PNG/JPEG/BMP/GIF through Pillow; optionally train/ and
test/ holding those), and an `.npz` of plain arrays (never unpickled). Errors name the file and say what
to change.
"""
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ember.data.arrays import MAX_CLASSES
from ember.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_INTEGER_RANGES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


# -- arrays ----------------------------------------------------------------------------------------
def _as_unit_float(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 (/255), uint16 (/65535), bool or float already in [0, 1] -> float32; anything else is an error."""
    if x.dtype == np.bool_:
        return torch.from_numpy(x.astype(np.float32))
    if x.dtype in _INTEGER_RANGES:
        return torch.from_numpy(x.astype(np.float32) / _INTEGER_RANGES[x.dtype])
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DatasetError(f"{what}: integer pixels must be 0..255 (uint8) or stored as uint16, "
                               f"got {x.dtype} in {x.min()}..{x.max()}")
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not np.isfinite(x).all():
            raise DatasetError(f"{what}: pixels hold NaN or infinite values")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DatasetError(f"{what}: float pixels must lie in [0, 1], got {x.min():g}..{x.max():g} "
                               "(store uint8 images, or divide by 255)")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    raise DatasetError(f"{what}: images must be numbers, got dtype {x.dtype}")


def to_model_input(x, image_size=None, color_mode=None, what="images") -> np.ndarray:
    """Images (N, H, W) or (N, H, W, C) -> float32 (N, H', W', C') in [0, 1], converted and resized.

    >>> to_model_input(uint8_images, image_size=[28, 28], color_mode="grayscale").shape
    (N, 28, 28, 1)
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DatasetError(f"{what}: must have shape (N, H, W) or (N, H, W, C) with 1, 3 or 4 channels, "
                           f"got {x.shape}")
    images = _as_unit_float(x, what)[..., :3]  # drop alpha
    if color_mode == "grayscale" and images.shape[-1] == 3:
        images = (images * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)  # ITU-R 601, as Pillow's "L"
    elif color_mode == "rgb" and images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    if image_size is not None and tuple(images.shape[1:3]) != tuple(image_size):
        nchw = images.permute(0, 3, 1, 2)
        nchw = F.interpolate(nchw, size=tuple(image_size), mode="bilinear", align_corners=False, antialias=True)
        images = nchw.permute(0, 2, 3, 1)
    return images.clamp_(0, 1).contiguous().numpy()


def class_labels(y, what: str) -> np.ndarray:
    """Labels as int64 class indices; fractions, NaN and negatives are errors."""
    y = np.asarray(y).reshape(-1)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DatasetError(f"{what}: labels must be whole class indices, found fractions or NaN")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: labels must be class indices, got dtype {y.dtype}")
    if y.size and np.abs(y).max() >= MAX_CLASSES:  # a label of 10**12 is a mistake, not 10**12 classes
        raise DatasetError(f"{what}: labels must be class indices below {MAX_CLASSES:,}, found {np.abs(y).max():g}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DatasetError(f"{what}: labels must be class indices 0, 1, ..., found {y.min()}")
    return y


# -- files -------------------------------------------------------------------------------------------
def _to_8bit(image):
    """16-bit and 32-bit Pillow modes scaled (not clipped) to 8-bit grayscale."""
    from PIL import Image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.round(np.clip(array / top, 0, 1) * 255).astype(np.uint8), "L")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 255.0 if array.max(initial=0) > 1 else 1.0
        return Image.fromarray(np.round(np.clip(array / top, 0, 1) * 255).astype(np.uint8), "L")
    return image


def read_image(path: Path, color_mode: str, image_size=None) -> np.ndarray:
    """One image file as uint8 (H, W, C), converted to `color_mode` and resized bilinearly with Pillow."""
    try:
        return decode_image(open(path, "rb"), color_mode, image_size, name=str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such image file") from None
    except DatasetError:
        raise
    except OSError as e:  # a folder, no permission
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def decode_image(source, color_mode: str, image_size=None, name: str = "image", max_pixels=None) -> np.ndarray:
    """`read_image` for an open binary file or bytes (an upload); errors call it `name`. An image of more
    than `max_pixels` is refused from its header, before it is decoded."""
    from PIL import Image, UnidentifiedImageError
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with source, Image.open(source) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise DatasetError(f"{name}: {image.width}x{image.height} pixels is more than the "
                                   f"{max_pixels:,} accepted")
            image = _to_8bit(image).convert("L" if color_mode == "grayscale" else "RGB")
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DatasetError(f"{name}: not a readable image (Pillow knows no image format in it)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{name}: not a readable image ({e})") from None
    return array[..., None] if array.ndim == 2 else array


def read_images(paths, color_mode: str, image_size=None) -> np.ndarray:
    """Image files as uint8 (N, H, W, C); without `image_size` they must all have the first one's size."""
    arrays = []
    for path in paths:
        array = read_image(path, color_mode, image_size)
        if arrays and array.shape != arrays[0].shape:
            raise DatasetError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, but {paths[0]} is "
                               f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; set data.image_size to resize them all")
        arrays.append(array)
    return np.stack(arrays)


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _files_by_class(root: Path, class_names=None) -> tuple[list[Path], list[int], list[str]]:
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    names = [p.name for p in folders]
    if class_names is not None and names != class_names:
        raise DatasetError(f"{root}: class folders {names} differ from the training classes {class_names}")
    if len(folders) < 2:
        raise DatasetError(f"{root}: needs one subfolder per class (at least two), found {len(folders)}")
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and _visible(p, folder))
        if not found:
            raise DatasetError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [label] * len(found)
    return files, labels, names


def load_folder(root, image_size=None, color_mode=None, test_split=0.2, seed=0, hold_out=True):
    """((x_train, y_train), (x_test, y_test), class_names) from a class-per-subfolder image tree.

    A tree with train/ and test/ folders keeps that split; otherwise `test_split` of the images, drawn
    with `seed`, is held out for testing (all of them when `hold_out` is false: evaluating a model).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data.folder: no such folder {str(root)!r}")
    color_mode = color_mode or "rgb"
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, train_labels, names = _files_by_class(root / "train")
        test_files, test_labels, _ = _files_by_class(root / "test", names)
        order = np.random.default_rng(seed).permutation(len(train_files))
        train_files, train_labels = [train_files[i] for i in order], [train_labels[i] for i in order]
    elif (root / "train").is_dir():
        raise DatasetError(f"{root}: has train/ but no test/; add test/ (one subfolder per class, as train/) "
                           "or put the class folders directly in it")
    else:
        files, labels, names = _files_by_class(root)
        order = np.random.default_rng(seed).permutation(len(files))
        n_test = max(1, int(round(len(files) * test_split))) if hold_out else len(files)
        test_idx, train_idx = order[:n_test], order[n_test:]
        train_files, train_labels = [files[i] for i in train_idx], [labels[i] for i in train_idx]
        test_files, test_labels = [files[i] for i in test_idx], [labels[i] for i in test_idx]
    x_test = read_images(test_files, color_mode, image_size)
    x_train = read_images(train_files, color_mode, image_size) if train_files else x_test[:0]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{root}: training images are {x_train.shape[2]}x{x_train.shape[1]}, test images "
                           f"{x_test.shape[2]}x{x_test.shape[1]}; set data.image_size to resize them all")
    return (x_train, np.array(train_labels)), (x_test, np.array(test_labels)), names


def load_npz(path, test_split=0.2, seed=0, hold_out=True):
    """Arrays x_train, y_train[, x_test, y_test, class_names]; without a test part, `test_split` of the
    samples is held out (all of them when `hold_out` is false). Object arrays are refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data.npz: no such file {str(path)!r}")
    try:
        # never unpickle a data file; the file is ours to close (np.load leaks it when the zip is broken)
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as arrays:
            contents = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        # truncated, not a zip, an unknown compression method, an "encrypted" entry
        raise DatasetError(f"{path}: not a readable .npz of plain arrays ({e})") from None
    for key in ("x_train", "y_train"):
        if key not in contents:
            raise DatasetError(f"{path}: missing array {key!r} (has {', '.join(contents) or 'nothing'})")
    for key in ("x_train", "y_train", "x_test", "y_test", "class_names"):
        if key in contents and contents[key].ndim == 0:
            raise DatasetError(f"{path}: {key} is a single value, not an array")
    x, y = contents["x_train"], class_labels(contents["y_train"], f"{path}: y_train")
    if len(x) != len(y):
        raise DatasetError(f"{path}: x_train has {len(x)} samples but y_train has {len(y)}")
    if "x_test" in contents and "y_test" in contents:
        test = contents["x_test"], class_labels(contents["y_test"], f"{path}: y_test")
        if test[0].shape[1:] != x.shape[1:]:
            raise DatasetError(f"{path}: x_test samples have shape {test[0].shape[1:]}, x_train samples "
                               f"{x.shape[1:]}; they must match")
        if len(test[0]) != len(test[1]):
            raise DatasetError(f"{path}: x_test has {len(test[0])} samples but y_test has {len(test[1])}")
    elif not hold_out:
        test, (x, y) = (x, y), (x[:0], y[:0])
    else:
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(round(len(x) * test_split)))
        test, (x, y) = (x[order[:n_test]], y[order[:n_test]]), (x[order[n_test:]], y[order[n_test:]])
    num_classes = int(max(y.max(initial=0), test[1].max(initial=0))) + 1
    if "class_names" in contents:
        names = [str(n) for n in contents["class_names"]]
        if len(names) < num_classes:
            raise DatasetError(f"{path}: labels go up to {num_classes - 1} but class_names has {len(names)} entries")
    else:
        names = [str(i) for i in range(num_classes)]
    return (x, y), test, names


def tile(images: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """Images (N, H, W, C) in [0, 1] as one uint8 picture (rows of `columns`, `gap` black pixels apart):
    (height, width) for grayscale, (height, width, 3) for RGB."""
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    sheet = np.zeros((rows * (h + gap) - gap, columns * (w + gap) - gap, c), dtype=np.uint8)
    pixels = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    for i, image in enumerate(pixels):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        sheet[top:top + h, left:left + w] = image
    return sheet[..., 0] if c == 1 else sheet
