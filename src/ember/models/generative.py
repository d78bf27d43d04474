"""Generative models that make training data: a conditional variational autoencoder for small images.

`ConditionalVAE` (Kingma & Welling 2014; Sohn et al. 2015) learns images of each class: an encoder maps an
image and its label to a Gaussian over a small latent space, a decoder maps a latent point and a label back
to an image. New images of a class come from decoding random latent points with that label.

It trains with the usual `compile` / `fit`, the labels as targets, and no loss to name: the loss is the
model's own negative evidence lower bound (per-pixel binary cross-entropy summed over the image, plus
`beta` times the KL divergence from the unit Gaussian), reported per image.

>>> vae = ConditionalVAE((28, 28, 1), num_classes=10)
>>> vae.compile(optimizer="adam"); vae.fit(x_train, y_train, epochs=20, batch_size=128)
>>> threes = vae.generate([3] * 64, seed=0)           # float32 (64, 28, 28, 1) in [0, 1]
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ember.models.model import Model
from ember.models.registry import register_model


class ConditionalVAE(Model):
    """Images (N, H, W, C) in [0, 1] and integer labels in; H and W divisible by 4. Two stride-2 convolutions
    (`filters`) and a `hidden`-unit layer encode, the mirror image decodes; `latent_dim` latent features."""

    def __init__(self, image_shape=(28, 28, 1), num_classes=10, latent_dim=4, filters=(32, 64), hidden=256,
                 beta=1.0, name=None):
        super().__init__(name=name or "conditional_vae")
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[0] % 4 or image_shape[1] % 4 or min(image_shape) < 1:
            raise ValueError(f"ConditionalVAE image_shape is (height, width, channels) with height and width "
                             f"divisible by 4, got {image_shape}")
        if int(num_classes) < 1 or int(latent_dim) < 1 or beta < 0:
            raise ValueError("ConditionalVAE needs num_classes >= 1, latent_dim >= 1 and beta >= 0")
        self._config = {"image_shape": list(image_shape), "num_classes": int(num_classes),
                        "latent_dim": int(latent_dim), "filters": [int(f) for f in filters], "hidden": int(hidden),
                        "beta": float(beta)}
        height, width, channels = image_shape
        first, second = self._config["filters"]
        self.image_shape, self.num_classes, self.latent_dim, self.beta = image_shape, int(num_classes), \
            int(latent_dim), float(beta)
        self._features = (second, height // 4, width // 4)
        flat = second * (height // 4) * (width // 4)
        self.encoder = nn.Sequential(nn.Conv2d(channels, first, 3, 2, 1), nn.ReLU(),
                                     nn.Conv2d(first, second, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.encoder_dense = nn.Linear(flat + num_classes, hidden)
        self.to_latent = nn.Linear(hidden, 2 * latent_dim)  # mean and log-variance
        self.decoder_dense = nn.Sequential(nn.Linear(latent_dim + num_classes, hidden), nn.ReLU(),
                                           nn.Linear(hidden, flat), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(second, first, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(first, channels, 4, 2, 1))
        self.built = True
        self.input_shape = image_shape

    # -- the model ------------------------------------------------------------------------------------
    def _one_hot(self, labels):
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"ConditionalVAE labels must be in [0, {self.num_classes}), got "
                             f"{int(labels.min())}..{int(labels.max())}")
        return F.one_hot(labels, self.num_classes).float()

    def encode(self, images, labels):
        """(mean, log-variance) of each image's latent Gaussian."""
        h = self.encoder(images.float().permute(0, 3, 1, 2))
        h = F.relu(self.encoder_dense(torch.cat([h, self._one_hot(labels)], dim=1)))
        return self.to_latent(h).chunk(2, dim=1)

    def decode_logits(self, z, labels):
        """Pixel logits (N, H, W, C) of the images of latent points `z` with `labels`."""
        h = self.decoder_dense(torch.cat([z, self._one_hot(labels)], dim=1))
        return self.decoder(h.reshape(-1, *self._features)).permute(0, 2, 3, 1)

    def _latent(self, mean, log_var):
        """A sample of the latent Gaussian in training (the reparameterization trick), its mean otherwise."""
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean

    def forward(self, images, labels):
        """Reconstructions of `images` (the latent mean in evaluation, a sample of it in training)."""
        return torch.sigmoid(self.decode_logits(self._latent(*self.encode(images, labels)), labels))

    @torch.inference_mode()
    def generate(self, labels, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """float32 images (len(labels), H, W, C) in [0, 1], one per label, decoded from random latent points
        (scaled by `temperature`; below 1 gives more typical, less varied images)."""
        was_training = self.training
        self.eval()
        try:
            labels = torch.as_tensor(np.asarray(labels), device=self.device).long().reshape(-1)
            generator = torch.Generator(device=self.device)
            if seed is None:
                generator.seed()  # a fresh, non-deterministic seed
            else:
                generator.manual_seed(seed)
            z = torch.randn(len(labels), self.latent_dim, generator=generator, device=self.device) * temperature
            return torch.sigmoid(self.decode_logits(z, labels)).float().cpu().numpy()
        finally:
            self.train(was_training)

    # -- training: the negative ELBO, no compiled loss needed -----------------------------------------------
    def _check_compiled(self):
        pass

    def loss_and_predictions(self, xs, y, weight):
        images = xs[0].float()
        with self._autocast():
            mean, log_var = self.encode(images, y)
            logits = self.decode_logits(self._latent(mean, log_var), y).float()
        reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="none").sum(dim=(1, 2, 3))
        kl = -0.5 * (1 + log_var - mean.square() - log_var.exp()).sum(dim=1)
        per_image = reconstruction + self.beta * kl.float()
        loss = per_image.mean() if weight is None else (per_image * weight).mean()
        return loss, torch.sigmoid(logits.detach())

    def get_config(self) -> dict:
        return {"name": self.name, **self._config}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


GENERATORS = {"ConditionalVAE": ConditionalVAE}


@register_model("conditional_vae")
def conditional_vae(input_shape=(28, 28, 1), num_classes=10, latent_dim=4, filters=(32, 64), hidden=256,
                    beta=1.0) -> ConditionalVAE:
    """A conditional VAE for `input_shape` images of `num_classes` classes (see ConditionalVAE)."""
    return ConditionalVAE(input_shape, num_classes, latent_dim, filters, hidden, beta)
