"""MixUp and CutMix: training-only layers that blend each image with another image of the batch.

Inside a model they record which image and how much (`last_mix`), and `Model` mixes the loss of the two
labels in the same proportion (`mixed_loss`), which works with any loss and with integer labels. Called on a
Keras-style dict `{"images": x, "labels": one_hot}` (a data pipeline) they mix both and return the dict.
"""
import torch

from ember.layers.augmentation import RandomLayer, random_boxes, as_images


class LabelMixer(RandomLayer):
    """Base of MixUp and CutMix: after a training forward, `last_mix` holds (partner index, weight of the
    image's own label) per image, for `Model` to mix the loss (then it is cleared)."""

    def __init__(self, alpha: float, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"{type(self).__name__} alpha must be a positive number, got {alpha!r}")
        self.alpha = float(alpha)
        self.last_mix = None

    def _draw(self, x):
        n = len(x)
        gen = self.generator(x.device)
        partner = torch.randperm(n, generator=gen, device=x.device)
        # Beta(a, a) as G1 / (G1 + G2) with Gamma(a) draws, through the layer's own generator
        g = torch._standard_gamma(torch.full((2, n), self.alpha, device=x.device), generator=gen)
        return partner, g[0] / (g[0] + g[1])

    def __call__(self, x, *args, **kwargs):
        if isinstance(x, dict):  # Keras's form, in a data pipeline: {"images": ..., "labels": one-hot}
            mixed, partner, own = self._mix(x["images"])
            labels = x["labels"].float()
            weight = own.reshape(-1, *([1] * (labels.dim() - 1)))
            return {**x, "images": mixed, "labels": labels * weight + labels[partner] * (1 - weight)}
        return super().__call__(x, *args, **kwargs)

    def forward(self, x):
        if not self.training:
            return x
        mixed, partner, own = self._mix(x)
        self.last_mix = (partner, own)
        return mixed

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class MixUp(LabelMixer):
    """Blend each training image with another image of the batch: lam·x_i + (1 - lam)·x_j, lam ~ Beta(alpha,
    alpha) per image, and the loss of their labels in the same proportion (Zhang et al., 2018)."""

    def __init__(self, alpha: float = 0.2, seed=None, **kwargs):
        super().__init__(alpha, seed, **kwargs)

    def _mix(self, x):
        x = x if x.is_floating_point() else x.float()
        partner, own = self._draw(x)
        weight = own.reshape(-1, *([1] * (x.dim() - 1)))
        return x * weight + x[partner] * (1 - weight), partner, own


class CutMix(LabelMixer):
    """Paste a random box of another image of the batch into each training image, covering 1 - lam of it with
    lam ~ Beta(alpha, alpha); the labels mix by the area each image keeps (Yun et al., 2019)."""

    def __init__(self, alpha: float = 1.0, seed=None, **kwargs):
        super().__init__(alpha, seed, **kwargs)

    def _mix(self, x):
        x = as_images(x, self)
        partner, own = self._draw(x)
        box = random_boxes(self, x, 1 - own)
        kept = 1 - box.float().mean(dim=(1, 2, 3))  # the exact share after rounding the box to pixels
        return torch.where(box, x[partner], x), partner, kept


def mixed_loss(loss_fn, y, y_pred, weight, mix):
    """The loss of a batch whose inputs a LabelMixer mixed: own · loss(y) + (1 - own) · loss(y[partner])."""
    partner, own = mix
    base = torch.ones_like(own) if weight is None else weight.float()
    return loss_fn(y, y_pred, base * own) + loss_fn(y[partner], y_pred, base * (1 - own))
