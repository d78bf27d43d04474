"""Keras-named augmentation layers: random transforms of whole batches, active only while training.

Each layer is the identity in `evaluate`, `predict`, export and serving (the model is in eval mode there),
and transforms a training batch as one tensor operation on the batch's device: no per-sample Python.
Images are channels-last (N, H, W, C), as everywhere in ember.

Randomness: with `seed=None` a layer draws from torch's global generator (`torch.manual_seed` makes a run
repeatable); with a seed it owns a generator seeded once, so its sequence of transforms is the same in
every run whatever else draws random numbers.

The geometric layers (RandomRotation, RandomZoom, RandomTranslation) each build one affine map per image;
consecutive ones in a Sequential are composed and resampled once (`compose_affine`), so stacking three of
them costs one `grid_sample`, not three.

MixUp and CutMix, which mix labels too, are in `layers/mixing.py`; TokenAugmentation, for token ids, in
`layers/text.py`.
"""
import functools
import math

import torch
import torch.nn.functional as F

from ember.layers.base import Layer

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")


def _range(factor, name: str, *, symmetric: bool = True, low: float = -1.0, high: float = 1.0) -> tuple:
    """Keras's factor argument: a number f means [-f, f] (or [0, f]), a pair (lo, hi) that range."""
    if isinstance(factor, (int, float)):
        lo, hi = (-abs(factor), abs(factor)) if symmetric else (0.0, float(factor))
    elif isinstance(factor, (list, tuple)) and len(factor) == 2 and all(isinstance(f, (int, float)) for f in factor):
        lo, hi = float(factor[0]), float(factor[1])
    else:
        raise ValueError(f"{name} must be a number or a pair (lower, upper), got {factor!r}")
    if lo > hi or lo < low or hi > high:
        raise ValueError(f"{name} must lie in [{low}, {high}] with lower <= upper, got {factor!r}")
    return float(lo), float(hi)


def _choice(value, name: str, allowed: tuple) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _value_range(value_range, name: str) -> tuple:
    if not (isinstance(value_range, (list, tuple)) and len(value_range) == 2 and value_range[0] < value_range[1]):
        raise ValueError(f"{name} value_range must be (min, max) with min < max, got {value_range!r}")
    return float(value_range[0]), float(value_range[1])


class RandomLayer(Layer):
    """A layer that transforms inputs at random while training and passes them through otherwise."""

    supports_masking = True

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"{type(self).__name__} seed must be an integer or None, got {seed!r}")
        self.seed = seed
        self._generator = None

    def generator(self, device):
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def uniform(self, n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
        """n float32 draws from U(low, high) on `like`'s device."""
        return torch.empty(n, device=like.device).uniform_(low, high, generator=self.generator(like.device))

    def forward(self, x):
        if not self.training:
            return x
        return self.augment(x)

    def augment(self, x):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def as_images(x: torch.Tensor, layer) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"{type(layer).__name__} takes images (batch, height, width, channels), got shape "
                         f"{tuple(x.shape)}")
    return x if x.is_floating_point() else x.float()


def _clip(x: torch.Tensor, value_range: tuple) -> torch.Tensor:
    return x.clamp(value_range[0], value_range[1])


class RandomFlip(RandomLayer):
    """Flip each image left-right ("horizontal"), up-down ("vertical") or both, each with probability 1/2."""

    def __init__(self, mode: str = "horizontal_and_vertical", seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.mode = _choice(mode, "RandomFlip mode", ("horizontal", "vertical", "horizontal_and_vertical"))

    def augment(self, x):
        x = as_images(x, self)
        if self.mode != "vertical":
            flip = self.uniform(len(x), 0, 1, x) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        if self.mode != "horizontal":
            flip = self.uniform(len(x), 0, 1, x) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(1), x)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# -- affine transforms, resampled once per run of consecutive geometric layers -----------------------------
class AffineLayer(RandomLayer):
    """Base of the geometric layers: `matrices(x)` gives each image's map from output to input pixel
    coordinates (relative to the image centre, in pixels) as (N, 2, 3)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed, **kwargs)
        self.fill_mode = _choice(fill_mode, f"{type(self).__name__} fill_mode", FILL_MODES)
        self.interpolation = _choice(interpolation, f"{type(self).__name__} interpolation", INTERPOLATIONS)
        self.fill_value = float(fill_value)

    def matrices(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def augment(self, x):
        return compose_affine([self], x)

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


def _then(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The (N, 2, 3) affine map p -> outer(inner(p))."""
    composed = outer[:, :, :2] @ inner
    composed[:, :, 2] += outer[:, :, 2]
    return composed


@functools.lru_cache(maxsize=16)
def _pixel_centres(height: int, width: int, device: torch.device) -> tuple:
    """Column and row coordinates of the pixel centres about the image centre: (1, 1, 1, W) and (1, 1, H, 1)."""
    columns = torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2
    rows = torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2
    return columns.view(1, 1, 1, width), rows.view(1, 1, height, 1)


def compose_affine(chain: list, x: torch.Tensor) -> torch.Tensor:
    """Apply the geometric layers of `chain` in order with one resampling: the output pixel p is read from
    the input at M_1 · M_2 · ... · M_k · p, using the first layer's fill mode and interpolation."""
    x = as_images(x, chain[0])
    n, h, w, _ = x.shape
    m = chain[0].matrices(x)
    for layer in chain[1:]:
        m = _then(m, layer.matrices(x))
    # sampling grid in grid_sample's [-1, 1] (align_corners=False), built as column terms + row terms: cheaper
    # than F.affine_grid's batched matmul for small images
    m = (m / torch.tensor([w / 2, h / 2], device=x.device)[None, :, None])[:, :, :, None, None]
    columns, rows = _pixel_centres(h, w, x.device)
    grid = (m[:, :, 0] * columns + (m[:, :, 1] * rows + m[:, :, 2])).permute(0, 2, 3, 1)  # (N, H, W, 2)
    first = chain[0]
    images = x.permute(0, 3, 1, 2)
    if first.fill_mode == "wrap":
        grid = torch.remainder(grid + 1, 2) - 1
    padding = {"reflect": "reflection", "wrap": "border", "constant": "zeros", "nearest": "border"}[first.fill_mode]
    if first.fill_mode == "constant" and first.fill_value:
        images = images - first.fill_value
    out = F.grid_sample(images, grid, mode=first.interpolation, padding_mode=padding, align_corners=False)
    if first.fill_mode == "constant" and first.fill_value:
        out = out + first.fill_value
    return out.permute(0, 2, 3, 1)


class RandomRotation(AffineLayer):
    """Rotate each image by a random angle: `factor` is a fraction of a full turn, 0.1 meaning up to ±36°."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.factor = factor
        self.lower, self.upper = _range(factor, "RandomRotation factor", low=-1.0, high=1.0)

    def matrices(self, x):
        angle = self.uniform(len(x), self.lower * 2 * math.pi, self.upper * 2 * math.pi, x)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(angle)
        return torch.stack([cos, -sin, zero, sin, cos, zero], 1).view(-1, 2, 3)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(AffineLayer):
    """Zoom each image by a random amount: a factor of 0.2 zooms between 20% in and 20% out (positive values
    zoom out, as in Keras). `width_factor=None` keeps the aspect ratio."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_range = _range(height_factor, "RandomZoom height_factor", low=-1.0, high=float("inf"))
        self.width_range = (None if width_factor is None else
                            _range(width_factor, "RandomZoom width_factor", low=-1.0, high=float("inf")))

    def matrices(self, x):
        zoom_y = self.uniform(len(x), 1 + self.height_range[0], 1 + self.height_range[1], x)
        zoom_x = zoom_y if self.width_range is None else self.uniform(len(x), 1 + self.width_range[0],
                                                                      1 + self.width_range[1], x)
        zero = torch.zeros_like(zoom_y)
        return torch.stack([zoom_x, zero, zero, zero, zoom_y, zero], 1).view(-1, 2, 3)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(AffineLayer):
    """Shift each image by a random fraction of its height and width (0.1: up to 10% either way)."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_range = _range(height_factor, "RandomTranslation height_factor")
        self.width_range = _range(width_factor, "RandomTranslation width_factor")

    def matrices(self, x):
        _, h, w, _ = x.shape
        (low_y, high_y), (low_x, high_x) = self.height_range, self.width_range
        from_y = self.uniform(len(x), -high_y * h, -low_y * h, x)  # the output shifts by dy: it reads from -dy
        from_x = self.uniform(len(x), -high_x * w, -low_x * w, x)
        one, zero = torch.ones_like(from_x), torch.zeros_like(from_x)
        return torch.stack([one, zero, from_x, zero, one, from_y], 1).view(-1, 2, 3)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


# -- crops and pixel values -------------------------------------------------------------------------------
class RandomCrop(RandomLayer):
    """Crop a random `height` x `width` window of each training image. Otherwise (and for images smaller than
    that) take the largest central window of that aspect ratio, resized to `height` x `width`."""

    def __init__(self, height: int, width: int, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            raise ValueError(f"RandomCrop height and width must be positive integers, got {height!r}, {width!r}")
        self.height, self.width = height, width

    def forward(self, x):
        x = as_images(x, self)
        _, h, w, _ = x.shape
        if self.training and h >= self.height and w >= self.width:
            return self.augment(x)
        return self._central(x)

    def augment(self, x):
        n, h, w, _ = x.shape
        gen = self.generator(x.device)
        top = torch.randint(0, h - self.height + 1, (n,), generator=gen, device=x.device)
        left = torch.randint(0, w - self.width + 1, (n,), generator=gen, device=x.device)
        rows = (top[:, None] + torch.arange(self.height, device=x.device))[:, :, None]
        cols = (left[:, None] + torch.arange(self.width, device=x.device))[:, None, :]
        return x[torch.arange(n, device=x.device)[:, None, None], rows, cols]

    def _central(self, x):
        _, h, w, _ = x.shape
        crop_h, crop_w = min(h, round(w * self.height / self.width)), min(w, round(h * self.width / self.height))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        x = x[:, top:top + crop_h, left:left + crop_w]
        if (crop_h, crop_w) == (self.height, self.width):
            return x
        resized = F.interpolate(x.permute(0, 3, 1, 2), size=(self.height, self.width), mode="bilinear",
                                align_corners=False, antialias=crop_h > self.height)
        return resized.permute(0, 2, 3, 1)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomContrast(RandomLayer):
    """Scale each image's deviation from its per-channel mean by a random factor in [1 - factor, 1 + factor],
    then clip to `value_range`."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.factor = factor
        lower, upper = _range(factor, "RandomContrast factor", symmetric=True, low=-1.0, high=float("inf"))
        self.lower, self.upper = 1 - abs(lower), 1 + upper
        self.value_range = _value_range(value_range, "RandomContrast")

    def augment(self, x):
        x = as_images(x, self)
        factor = self.uniform(len(x), self.lower, self.upper, x)[:, None, None, None]
        mean = x.mean(dim=(1, 2), keepdim=True)
        return _clip((x - mean) * factor + mean, self.value_range)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": list(self.value_range)}


class RandomBrightness(RandomLayer):
    """Add a random amount in [-factor, factor] × the width of `value_range` to each image, then clip."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.factor = factor
        self.lower, self.upper = _range(factor, "RandomBrightness factor")
        self.value_range = _value_range(value_range, "RandomBrightness")

    def augment(self, x):
        x = as_images(x, self)
        width = self.value_range[1] - self.value_range[0]
        delta = self.uniform(len(x), self.lower, self.upper, x)[:, None, None, None] * width
        return _clip(x + delta, self.value_range)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": list(self.value_range)}


def random_boxes(layer, x, area_fraction, aspect_log_range=None):
    """A boolean (N, H, W, 1) mask of one rectangle per image covering `area_fraction` of it (aspect ratio
    log-uniform in `aspect_log_range`, else that of the image), placed uniformly at random (CutMix,
    Random Erasing)."""
    n, h, w, _ = x.shape
    if aspect_log_range is None:
        aspect = torch.ones(n, device=x.device)
    else:
        aspect = torch.exp(layer.uniform(n, *aspect_log_range, x))
    box_h = (torch.sqrt(area_fraction / aspect) * h).round().clamp(0, h)
    box_w = (torch.sqrt(area_fraction * aspect) * w).round().clamp(0, w)
    top = (layer.uniform(n, 0, 1, x) * (h - box_h + 1)).floor()
    left = (layer.uniform(n, 0, 1, x) * (w - box_w + 1)).floor()
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[..., None]


class RandomErasing(RandomLayer):
    """With probability `factor`, blank out a random rectangle of each image covering a `scale` fraction of its
    area (aspect ratio between 0.3 and 3.3), filled with `fill_value` or, when None, uniform noise over
    `value_range` (Zhong et al., 2017)."""

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not (isinstance(factor, (int, float)) and 0 <= factor <= 1):
            raise ValueError(f"RandomErasing factor is a probability in [0, 1], got {factor!r}")
        self.factor = float(factor)
        self.scale = _range(scale, "RandomErasing scale", symmetric=False, low=0.0, high=1.0)
        self.fill_value = None if fill_value is None else float(fill_value)
        self.value_range = _value_range(value_range, "RandomErasing")

    def augment(self, x):
        x = as_images(x, self)
        n = len(x)
        area = self.uniform(n, *self.scale, x)
        erase = random_boxes(self, x, area, (math.log(0.3), math.log(1 / 0.3)))
        erase &= (self.uniform(n, 0, 1, x) < self.factor)[:, None, None, None]
        if self.fill_value is not None:
            fill = torch.full_like(x, self.fill_value)
        else:
            low, high = self.value_range
            fill = torch.rand(x.shape, generator=self.generator(x.device), device=x.device) * (high - low) + low
        return torch.where(erase, fill, x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "scale": list(self.scale),
                "fill_value": self.fill_value, "value_range": list(self.value_range)}
