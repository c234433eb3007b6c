"""`BaseVAE`: the small interface every model family shares.

A model sees one input per scan position: a patch ``(C, p, p)`` or a feature vector
``(F,)``. Its latent vector is ``[content..., pose...]``: ``latent_dim`` content latents
(what the latent maps show) followed by ``n_pose`` pose latents (shifts, an angle) that
the invariant families use to render the content at the right place. All latents have a
standard normal prior; the pose latents are scaled to physical units in the decoder.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .nets import ConvEncoder, MLPEncoder

LIKELIHOODS = ("bernoulli", "gaussian")


class BaseVAE(nn.Module):
    """Encoder, likelihood and KL shared by all families; subclasses define `render`.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, p, p)`` for patches (convolutional encoder) or ``(F,)`` for feature
        vectors (MLP encoder).
    latent_dim : int
        Number of content latents.
    likelihood : {"bernoulli", "gaussian"}
        Bernoulli (binary cross-entropy, decoder outputs logits) suits data scaled to
        [0, 1]; Gaussian (with one learned noise scale) suits anything else.
    hidden : int
        Width of the hidden layers.
    """

    family = "base"
    n_pose = 0

    def __init__(self, input_shape, latent_dim: int = 2, likelihood: str = "bernoulli",
                 hidden: int = 128):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.hidden = int(hidden)
        n_out = self.latent_dim + self.n_pose
        if len(self.input_shape) == 3:
            c, p, _ = self.input_shape
            self.encoder = ConvEncoder(c, p, n_out, hidden=hidden)
        else:
            self.encoder = MLPEncoder(math.prod(self.input_shape), n_out, hidden=hidden)
        # One noise scale for the whole image: learned, so the balance between the
        # reconstruction and the KL/boundary terms adapts to the data's noise level.
        self.log_sigma = nn.Parameter(torch.tensor(-1.0))

    # -- the interface -------------------------------------------------------------
    @property
    def config(self) -> dict:
        """JSON-able constructor arguments plus ``family``; `build_model` inverts it."""
        return {"family": self.family, "input_shape": list(self.input_shape),
                "latent_dim": self.latent_dim, "likelihood": self.likelihood,
                "hidden": self.hidden}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of all latents, ``(B, latent_dim + n_pose)`` each."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Expected input (in data units) for latents ``z``.

        ``z`` holds the content latents, optionally followed by the pose latents
        (zero pose when they are left out).
        """
        out = self.decoder_output(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (Bernoulli) or means (Gaussian) of ``p(x | z)``."""
        if z.shape[-1] == self.latent_dim and self.n_pose:
            z = torch.cat([z, z.new_zeros(*z.shape[:-1], self.n_pose)], dim=-1)
        content, pose = z[..., : self.latent_dim], z[..., self.latent_dim:]
        return self.render(content, pose)

    def render(self, content: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pose_units(self, pose_mu: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pose latents in physical units (e.g. ``{"shift": px, "angle": rad}``)."""
        return {}

    def loss_terms(self, x: torch.Tensor, sample: bool = True,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample negative ELBO terms and the posterior.

        ``generator`` draws the reparameterisation noise; `fit` passes its own, so that
        fits running at once in one process do not share (and reorder) random draws.

        Returns
        -------
        dict
            ``reconstruction`` and ``kl`` ``(B,)`` (nats), ``mu`` and ``std``
            ``(B, latent_dim + n_pose)``.
        """
        mu, std = self.encode(x)
        if sample:
            noise = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
            z = mu + std * noise
        else:
            z = mu
        out = self.decoder_output(z).float()
        x = x.float()
        if self.likelihood == "bernoulli":
            rec = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            log_sigma = self.log_sigma.clamp(min=math.log(1e-3))
            rec = 0.5 * ((x - out) / log_sigma.exp()) ** 2 + log_sigma + 0.5 * math.log(2 * math.pi)
        mu, std = mu.float(), std.float()
        kl = 0.5 * (mu ** 2 + std ** 2 - 1.0) - torch.log(std)
        return {"reconstruction": rec.flatten(1).sum(1), "kl": kl.sum(1), "mu": mu, "std": std}
