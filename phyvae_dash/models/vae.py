"""The plain VAE: a conv (patches) or MLP (vectors) encoder and an MLP decoder."""
from __future__ import annotations

import torch

from .base import BaseVAE
from .nets import MLPDecoder


class VAE(BaseVAE):
    """Plain VAE: conv (patches) or MLP (vectors) encoder, MLP decoder.

    Examples
    --------
    >>> vae = VAE((1, 8, 8), latent_dim=2)
    >>> terms = vae.loss_terms(torch.rand(5, 1, 8, 8))
    >>> sorted(terms), tuple(terms["kl"].shape)
    (['kl', 'mu', 'reconstruction', 'std'], (5,))
    """

    family = "vae"

    def __init__(self, input_shape, latent_dim: int = 2, likelihood: str = "bernoulli",
                 hidden: int = 128):
        super().__init__(input_shape, latent_dim, likelihood, hidden)
        self.decoder = MLPDecoder(self.latent_dim, self.input_shape, hidden=hidden)

    def render(self, content: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return self.decoder(content)
