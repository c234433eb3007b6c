"""Encoder and decoder building blocks shared by the VAE families.

Kept deliberately small: the models train on thousands of patches on a laptop CPU in
seconds, so a wide network buys nothing but time. Every encoder returns the mean and
the standard deviation of a diagonal Gaussian posterior.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _conv_out(size: int) -> int:
    """Side after a 3x3 convolution with stride 2 and padding 1."""
    return (size - 1) // 2 + 1


class ConvEncoder(nn.Module):
    """Two strided convolutions and a linear layer: ``(B, C, p, p) -> (mu, std)``.

    Examples
    --------
    >>> enc = ConvEncoder(in_channels=1, patch_size=16, out_dim=4)
    >>> mu, std = enc(torch.zeros(3, 1, 16, 16))
    >>> tuple(mu.shape), bool((std > 0).all())
    ((3, 4), True)
    """

    def __init__(self, in_channels: int, patch_size: int, out_dim: int, hidden: int = 128,
                 channels: int = 8):
        super().__init__()
        side = _conv_out(_conv_out(patch_size))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(),
            nn.Linear(2 * channels * side * side, hidden), nn.GELU(),
        )
        self.head = nn.Linear(hidden, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, F.softplus(raw) + 1e-4


class MLPEncoder(nn.Module):
    """Fully connected encoder for vector features ``(B, F) -> (mu, std)``.

    Examples
    --------
    >>> mu, std = MLPEncoder(in_dim=10, out_dim=2)(torch.zeros(5, 10))
    >>> tuple(std.shape)
    (5, 2)
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        self.features = mlp(in_dim, hidden, hidden, layers - 1, last_activation=True)
        self.head = nn.Linear(hidden, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.head(self.features(x.flatten(1))).chunk(2, dim=-1)
        return mu, F.softplus(raw) + 1e-4


class InplaceTanh(nn.Tanh):
    """tanh computed in place.

    Safe wherever it follows a linear layer (as in `mlp`): the layer's backward does not
    need its output. Worth it because in the coordinate decoder a fresh tensor of that
    size costs as much as the tanh itself.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.tanh_()


class InplaceReLU(nn.ReLU):
    """ReLU computed in place (safe after a linear layer, as `InplaceTanh`).

    Its backward (a mask) is the cheapest of the activations: in the coordinate decoder
    it trains about 5 % faster per step than tanh.
    """

    def __init__(self):
        super().__init__(inplace=True)


#: Activations a network can be built with, by name (names go into model configs).
ACTIVATIONS = {"gelu": nn.GELU, "tanh": InplaceTanh, "relu": InplaceReLU}


def mlp(in_dim: int, hidden: int, out_dim: int, hidden_layers: int,
        last_activation: bool = False, activation: str = "gelu") -> nn.Sequential:
    """``in -> hidden (x hidden_layers) -> out`` with ``activation`` between layers."""
    dims = [in_dim] + [hidden] * hidden_layers + [out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    """``z (B, L) -> x_hat (B, *out_shape)``; the output is a mean or a logit.

    Examples
    --------
    >>> MLPDecoder(2, (1, 8, 8))(torch.zeros(4, 2)).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], hidden: int = 128,
                 layers: int = 2):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp(latent_dim, hidden, math.prod(self.out_shape), layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


def coordinate_grid(shape: tuple[int, ...]) -> torch.Tensor:
    """Pixel-centre coordinates spanning [-1, 1] per axis: ``(prod(shape), len(shape))``.

    For a 2-D patch the columns are ``(y, x)``; for a vector, one column.

    Examples
    --------
    >>> coordinate_grid((3, 3))[0].tolist()
    [-1.0, -1.0]
    """
    axes = [torch.linspace(-1.0, 1.0, n) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


class CoordDecoder(nn.Module):
    """Decoder evaluated on a (transformed) coordinate grid, as pyroVED's ``sDecoderNet``.

    Each output pixel is ``f(r, z)``: coordinates and latent go through their own
    layer, are summed, then an MLP maps the sum to the value at ``r``. Because ``r`` is
    an input, shifting or rotating the grid renders the same content shifted or
    rotated, which is what lets translation/rotation latents absorb the pose.

    Unlike pyroVED, the coordinates first pass through learnable Fourier features
    ``[cos 2 pi k.r, sin 2 pi k.r]`` (Tancik et al. 2020), with frequencies ``k``
    initialised up to the patch's Nyquist frequency. A plain MLP of ``r`` learns the
    high frequencies of an atomic lattice very slowly (our coordinate VAE reconstructed
    almost nothing of a lattice phantom in 40 epochs without them); with them a lattice
    is a few features, and a shift is a phase rotation of each feature.

    The MLP runs once per pixel of every patch, so it is the whole cost of training.
    `shifted` renders a shifted grid without building a per-patch copy of it (see there);
    `forward` takes any per-patch grid (the rotation model's).

    Parameters
    ----------
    latent_dim, coord_dim, out_channels : int
    hidden : int
        Width of the MLP (it runs once per pixel, so it dominates the cost).
    layers : int
        Number of hidden layers.
    fourier : int
        Number of Fourier frequencies (0: raw coordinates as in pyroVED).
    nyquist : float
        Highest initial frequency in cycles per grid unit (the grid spans [-1, 1]):
        ``(n - 1) / 4`` for ``n`` pixels.
    activation : {"relu", "tanh", "gelu"}
        Activation of the hidden layers after the first (which is always tanh, as in
        pyroVED). tanh costs about 10 % less per training step than GELU (whose
        backward is the slowest elementwise op of the step), and ReLU (in place, its
        backward a mask) about 5 % less again; all segmented alike.

    Examples
    --------
    >>> dec = CoordDecoder(latent_dim=2, coord_dim=2, out_channels=1, nyquist=1.75)
    >>> grid = coordinate_grid((8, 8))
    >>> dec(grid.expand(4, -1, -1), torch.zeros(4, 2)).shape
    torch.Size([4, 64, 1])
    >>> shift = torch.full((4, 2), 0.3)
    >>> torch.allclose(dec.shifted(grid, shift, torch.zeros(4, 2)),
    ...                dec(grid + shift[:, None], torch.zeros(4, 2)), atol=1e-5)
    True
    """

    def __init__(self, latent_dim: int, coord_dim: int, out_channels: int, hidden: int = 64,
                 layers: int = 2, fourier: int = 32, nyquist: float = 4.0,
                 activation: str = "relu"):
        super().__init__()
        self.fourier = int(fourier)
        if self.fourier:
            # Directions uniform on the circle (or +-1 in 1-D), radii uniform up to Nyquist.
            k = torch.randn(self.fourier, coord_dim)
            k = k / k.norm(dim=1, keepdim=True) * torch.rand(self.fourier, 1) * nyquist
            self.freq = nn.Parameter(k)
            self.fc_coord = nn.Linear(2 * self.fourier, hidden)
        else:
            self.fc_coord = nn.Linear(coord_dim, hidden)
        self.fc_z = nn.Linear(latent_dim, hidden, bias=False)
        self.net = mlp(hidden, hidden, out_channels, layers - 1, activation=activation)

    def _phase(self, coords: torch.Tensor) -> torch.Tensor:
        # Phases reach tens of radians: keep them in float32 under autocast.
        with torch.autocast(coords.device.type, enabled=False):
            return (2 * math.pi) * coords.float() @ self.freq.float().T

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``coords (B, N, D)``, ``z (B, L)`` -> ``(B, N, out_channels)``."""
        if self.fourier:
            phase = self._phase(coords)
            coords = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
        # In place (here and below): a linear layer's backward does not need its output,
        # and these are the largest tensors of a training step.
        h = self.fc_coord(coords).add_(self.fc_z(z).unsqueeze(1))
        return self.net(h.tanh_())

    def shifted(self, grid: torch.Tensor, shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``forward(grid + shift, z)`` for one grid ``(N, D)`` and shifts ``(B, D)``.

        The first layer is linear in the Fourier features, and shifting the grid
        rotates each feature's phase by a per-patch angle ``b = 2 pi k.shift``:
        ``cos(a + b) = cos a cos b - sin a sin b`` (likewise ``sin``). So the features
        of the unshifted grid (computed once, ``N x 2F``) times a per-patch rotated
        weight (``B x 2F x H``, cheap) give the same pre-activations as the features of
        every shifted grid (``B x N x 2F``, with a cosine and a sine each) times the
        shared weight. All patches then go through one matrix product
        ``(N, 2F) @ (2F, B * H)``, with the per-patch bias (latent and shift terms)
        added inside it, and the MLP runs on ``(N, B, H)`` rows.

        Returns ``(B, N, out_channels)`` (a transposed view).
        """
        b = shift.shape[0]
        w, bias = self.fc_coord.weight, self.fc_coord.bias          # (H, 2F | D), (H,)
        per_patch = self.fc_z(z) + bias                              # (B, H)
        if self.fourier:
            phase = self._phase(grid)                                 # (N, F)
            rot = self._phase(shift)                                  # (B, F)
            feats = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
            cos_b, sin_b = torch.cos(rot).unsqueeze(-1), torch.sin(rot).unsqueeze(-1)
            w_cos, w_sin = w[:, : self.fourier].T, w[:, self.fourier:].T  # (F, H) each
            weight = torch.cat([cos_b * w_cos + sin_b * w_sin,          # rows for cos a
                                cos_b * w_sin - sin_b * w_cos], dim=1)  # rows for sin a
        else:
            # Raw coordinates: the shift only adds a per-patch bias.
            feats = grid
            per_patch = per_patch + shift @ w.T
            weight = w.T.expand(b, -1, -1)
        # (2F, B * H): patches side by side, so one product serves the whole batch.
        weight = weight.permute(1, 0, 2).reshape(feats.shape[-1], -1)
        h = torch.addmm(per_patch.reshape(-1), feats.to(weight.dtype), weight)
        out = self.net(h.tanh_().view(grid.shape[0] * b, -1))       # (N * B, C)
        return out.view(grid.shape[0], b, -1).transpose(0, 1)
