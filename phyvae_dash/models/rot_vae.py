"""Rotation- and shift-invariant VAE, as atomai's rVAE.

A third pose latent, the angle, rotates the coordinate grid before the shift; grains of
one lattice at different orientations then share their content latents.
"""
from __future__ import annotations

import torch

from .shift_vae import ShiftVAE


class RotVAE(ShiftVAE):
    """VAE with an angle latent and two shift latents; patches ``(C, p, p)`` only.

    Parameters
    ----------
    angle_prior : float
        Standard deviation of the angle prior in radians.
    Others as `ShiftVAE`.

    Examples
    --------
    >>> m = RotVAE((1, 12, 12), latent_dim=2, shift_prior=3.0)
    >>> mu, _ = m.encode(torch.rand(4, 1, 12, 12))
    >>> sorted(m.pose_units(mu[:, 2:]))
    ['angle', 'shift']
    """

    family = "rotation"

    def __init__(self, input_shape, latent_dim: int = 2, likelihood: str = "bernoulli",
                 hidden: int = 128, shift_prior: float = 2.0, decoder_hidden: int = 32,
                 angle_prior: float = 1.0, fourier: int = 32, decoder_layers: int = 2,
                 decoder_activation: str = "tanh"):
        if len(input_shape) != 3:
            raise ValueError("the rotation model needs patch inputs (C, p, p), not vectors")
        self.angle_prior = float(angle_prior)
        super().__init__(input_shape, latent_dim, likelihood, hidden, shift_prior, decoder_hidden,
                         fourier, decoder_layers, decoder_activation)

    @staticmethod
    def pose_count(input_shape) -> int:
        return 3  # angle, dy, dx

    @property
    def config(self) -> dict:
        return {**super().config, "angle_prior": self.angle_prior}

    def pose_units(self, pose_mu):
        return {"angle": pose_mu[..., 0] * self.angle_prior,
                "shift": pose_mu[..., 1:] * self.shift_prior}

    def transform_grid(self, pose):
        phi = pose[:, 0] * self.angle_prior
        cos, sin = torch.cos(phi), torch.sin(phi)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        coords = self.grid @ rot.transpose(1, 2)                 # (B, N, 2)
        return coords + self.grid_shift(pose[:, 1:]).unsqueeze(1)

    def render(self, content, pose):
        # A rotation changes every pixel's Fourier phases differently: a grid per patch.
        out = self.decoder(self.transform_grid(pose), content)      # (B, N, C)
        return out.transpose(1, 2).reshape(-1, *self.input_shape)
