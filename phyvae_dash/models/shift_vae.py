"""Shift-invariant VAE: translation latents and a coordinate-grid decoder (pyroVED's iVAE).

Neighbouring patches of a lattice see the same atoms at different offsets. A plain VAE
spends its latents on *where* the atoms sit; here two pose latents ``(dy, dx)`` move
the coordinate grid on which the decoder renders the patch, so the offset is explained
by the pose and the content latents are free to encode the phase.

The shift prior is in pixels and should be sized to the lattice period (offsets modulo
one period are equivalent, so a prior standard deviation of about half a period covers
them). The authors' code used 0.1 on a [-1, 1] grid, i.e. under one pixel for a
16-pixel patch: far too small to absorb a lattice offset.
"""
from __future__ import annotations

import torch

from .nets import CoordDecoder, coordinate_grid
from .base import BaseVAE


class ShiftVAE(BaseVAE):
    """VAE with translation latents; patches ``(C, p, p)`` or vectors ``(F,)``.

    Parameters
    ----------
    input_shape, latent_dim, likelihood, hidden
        As `BaseVAE`.
    shift_prior : float
        Standard deviation of the shift prior in pixels (vector inputs: in samples).
    decoder_hidden : int
        Width of the coordinate decoder (it runs once per pixel, so it dominates the
        cost). 32 trains several times faster than the former 64 with GELU and
        segmented the NiO-LSMO phantom at least as well (``benchmarks/speed.py``,
        ``benchmarks/quality.py --phantom nio_lsmo``).
    fourier : int
        Fourier features of the coordinates in the decoder (see `CoordDecoder`).
    decoder_layers : int
        Hidden layers of the coordinate decoder.
    decoder_activation : {"relu", "tanh", "gelu"}
        Activation of the coordinate decoder's later hidden layers (see `CoordDecoder`;
        models saved before this setting existed used "gelu", and `build_model` says so).
        ReLU (default) trains faster than tanh and segmented the NiO-LSMO phantom as
        well; 16 Fourier features instead of 32 were faster still but segmented worse
        on patches (``benchmarks/speed.py``, ``benchmarks/quality.py``).

    Examples
    --------
    >>> m = ShiftVAE((1, 12, 12), latent_dim=2, shift_prior=3.0)
    >>> mu, std = m.encode(torch.rand(4, 1, 12, 12))
    >>> tuple(mu.shape), tuple(m.decode(mu).shape)
    ((4, 4), (4, 1, 12, 12))
    """

    family = "shift"

    def __init__(self, input_shape, latent_dim: int = 2, likelihood: str = "bernoulli",
                 hidden: int = 128, shift_prior: float = 2.0, decoder_hidden: int = 32,
                 fourier: int = 32, decoder_layers: int = 2, decoder_activation: str = "relu"):
        self.n_pose = self.pose_count(input_shape)
        super().__init__(input_shape, latent_dim, likelihood, hidden)
        self.shift_prior = float(shift_prior)
        self.decoder_hidden = int(decoder_hidden)
        self.fourier = int(fourier)
        self.decoder_layers = int(decoder_layers)
        self.decoder_activation = str(decoder_activation)
        spatial = self.input_shape[1:] if len(self.input_shape) == 3 else self.input_shape
        self.channels = self.input_shape[0] if len(self.input_shape) == 3 else 1
        self.register_buffer("grid", coordinate_grid(spatial), persistent=False)
        # Grid units per pixel: the grid spans [-1, 1] over (n - 1) pixel steps.
        self.px = 2.0 / (max(spatial) - 1)
        self.decoder = CoordDecoder(self.latent_dim, len(spatial), self.channels,
                                    hidden=decoder_hidden, layers=decoder_layers,
                                    fourier=fourier, activation=decoder_activation,
                                    nyquist=(max(spatial) - 1) / 4)

    @property
    def config(self) -> dict:
        return {**super().config, "shift_prior": self.shift_prior,
                "decoder_hidden": self.decoder_hidden, "fourier": self.fourier,
                "decoder_layers": self.decoder_layers,
                "decoder_activation": self.decoder_activation}

    @staticmethod
    def pose_count(input_shape) -> int:
        """One shift per spatial axis of the input."""
        return 2 if len(input_shape) == 3 else 1

    def pose_units(self, pose_mu):
        return {"shift": pose_mu * self.shift_prior}

    def transform_grid(self, pose: torch.Tensor) -> torch.Tensor:
        """The decoder samples the template at ``r + shift`` (``(B, N, D)``)."""
        return self.grid + self.grid_shift(pose).unsqueeze(1)

    def grid_shift(self, pose: torch.Tensor) -> torch.Tensor:
        """Shift latents in grid units ``(B, D)``."""
        return pose * (self.shift_prior * self.px)

    def render(self, content, pose):
        # A pure shift never needs a per-patch grid: see `CoordDecoder.shifted`.
        out = self.decoder.shifted(self.grid, self.grid_shift(pose), content)  # (B, N, C)
        return out.transpose(1, 2).reshape(-1, *self.input_shape)
