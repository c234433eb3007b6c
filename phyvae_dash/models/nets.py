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

    Its backward (a mask) is the cheapest of the activations, which matters in the
    coordinate decoder (``benchmarks/speed.py`` times the choices).
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
        pyroVED). GELU's backward is the slowest elementwise op of a training step;
        tanh is cheaper and ReLU (in place, its backward a mask) cheaper still, and all
        three segmented alike (``benchmarks/speed.py`` and ``benchmarks/quality.py``).

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

        On the CPU in float32 with the default MLP (one hidden layer, ReLU or tanh) the
        same arithmetic runs in `_ShiftedCoordMLP`, a few patches at a time with a
        hand-written backward, which keeps every intermediate in cache, so a training
        step of the shift model is faster than autograd's (``benchmarks/speed.py``
        prints both, and ``torch.compile``'s). Elsewhere (CUDA, autocast,
        GELU models saved before ReLU was the default) autograd runs the code below.

        Returns ``(B, N, out_channels)`` (a transposed view).
        """
        b = shift.shape[0]
        w, bias = self.fc_coord.weight, self.fc_coord.bias          # (H, 2F | D), (H,)
        per_patch = self.fc_z(z) + bias                              # (B, H)
        act = _fused_activation(self.net)
        if self.fourier and act and _fusable(grid, per_patch, w):
            phase = self._phase(grid)                                 # (N, F)
            rot = self._phase(shift)                                  # (B, F)
            feats = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
            hidden, last = self.net[0], self.net[2]
            chunk = max(1, FUSED_CHUNK_BYTES // (4 * grid.shape[0] * w.shape[0]))  # patches
            out = _ShiftedCoordMLP.apply(feats, torch.cos(rot), torch.sin(rot), w, per_patch,
                                         hidden.weight, hidden.bias, last.weight, last.bias,
                                         act, chunk)                   # (B, C, N)
            return out.transpose(1, 2)
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


#: Bytes of one activation block of the fused shifted decoder: small enough that a
#: block's activations and their gradients stay in a core's L2 cache (1-2 MiB).
FUSED_CHUNK_BYTES = 1 << 19


def _fused_activation(net: nn.Sequential) -> str | None:
    """``"relu"``/``"tanh"`` if ``net`` is ``Linear, activation, Linear`` (else None)."""
    if (len(net) == 3 and isinstance(net[0], nn.Linear) and isinstance(net[2], nn.Linear)
            and type(net[1]) in (InplaceReLU, InplaceTanh)):
        return "relu" if isinstance(net[1], InplaceReLU) else "tanh"
    return None


def _fusable(*tensors: torch.Tensor) -> bool:
    """The fused CPU path: float32 tensors on the CPU, no autocast."""
    try:
        autocast = torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        autocast = torch.is_autocast_cpu_enabled()
    return (all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not autocast)


_tanh_backward = torch.ops.aten.tanh_backward
_threshold_backward = torch.ops.aten.threshold_backward


class _ShiftedCoordMLP(torch.autograd.Function):
    """`CoordDecoder.shifted` after the Fourier features, forward and backward by hand.

    The same arithmetic as the autograd version, in blocks of a few patches: on the
    CPU a training step of the shift model is bound by memory traffic, not by its
    matrix products, when each elementwise op (tanh, ReLU, their backward, bias
    gradients) streams a ``(N * B, H)`` tensor (8 MB at batch 256) through memory. In
    blocks of ``chunk`` patches every intermediate stays in cache, the per-patch
    rotated weight is built once as ``(2F, B, H)`` (no concatenation or transposed
    copy), and its gradient is folded back into the shared weight and the rotation
    with batched matrix products instead of elementwise products and sums.

    Inputs: ``feats (N, 2F)`` (cos | sin of the grid phases), ``cos_b, sin_b (B, F)``
    (the per-patch phase rotation), ``w1 (H, 2F)``, ``per_patch (B, H)`` (first-layer
    bias plus latent term), ``w2 (H, H)``, ``b2 (H,)``, ``w3 (C, H)``, ``b3 (C,)``,
    the activation of the second layer and the block size. Returns ``(B, C, N)``.
    """

    @staticmethod
    def forward(ctx, feats, cos_b, sin_b, w1, per_patch, w2, b2, w3, b3, act, chunk):
        n, k = feats.shape
        f = k // 2
        b, h = per_patch.shape
        c = w3.shape[0]
        w_cos, w_sin = w1[:, :f].T.unsqueeze(1), w1[:, f:].T.unsqueeze(1)   # (F, 1, H)
        cos_t, sin_t = cos_b.T.unsqueeze(-1), sin_b.T.unsqueeze(-1)        # (F, B, 1)
        weight = feats.new_empty(k, b, h)      # per-patch rotated first-layer weight
        torch.mul(cos_t, w_cos, out=weight[:f]).addcmul_(sin_t, w_sin)
        torch.mul(cos_t, w_sin, out=weight[f:]).addcmul_(sin_t, w_cos, value=-1.0)
        weight2 = weight.view(k, b * h)
        bias1 = per_patch.reshape(-1)
        w2t, w3t = w2.T, w3.T
        out = feats.new_empty(b, c, n)
        keep = any(ctx.needs_input_grad)
        h1s, h2s = [], []
        for p0 in range(0, b, chunk):
            p1 = min(b, p0 + chunk)
            cols = slice(p0 * h, p1 * h)
            h1 = torch.addmm(bias1[cols], feats, weight2[:, cols]).tanh_()   # (N, b*H)
            h2 = torch.addmm(b2, h1.view(-1, h), w2t)                          # (N*b, H)
            h2 = h2.relu_() if act == "relu" else h2.tanh_()
            out[p0:p1] = torch.addmm(b3, h2, w3t).view(n, p1 - p0, c).permute(1, 2, 0)
            if keep:
                h1s.append(h1)
                h2s.append(h2)
        ctx.save_for_backward(feats, cos_b, sin_b, w1, w2, w3)
        ctx.weight, ctx.h1s, ctx.h2s, ctx.act, ctx.chunk = weight, h1s, h2s, act, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        feats, cos_b, sin_b, w1, w2, w3 = ctx.saved_tensors
        weight, h1s, h2s, act, chunk = ctx.weight, ctx.h1s, ctx.h2s, ctx.act, ctx.chunk
        ctx.weight = ctx.h1s = ctx.h2s = None
        need = ctx.needs_input_grad
        n, k = feats.shape
        f = k // 2
        b, c, _ = grad.shape
        h = w2.shape[0]
        weight2 = weight.view(k, b * h)
        g_weight = feats.new_empty(k, b, h)
        g_weight2 = g_weight.view(k, b * h)
        g_bias1 = feats.new_empty(b * h)
        g_feats = feats.new_zeros(n, k) if need[0] else None
        g_w2, g_b2 = w2.new_zeros(h, h), w2.new_zeros(h)
        g_w3 = w3.new_zeros(c, h)
        g_b3 = grad.sum((0, 2))
        feats_t = feats.T
        for i, p0 in enumerate(range(0, b, chunk)):
            p1 = min(b, p0 + chunk)
            cols = slice(p0 * h, p1 * h)
            h1, h2 = h1s[i].view(-1, h), h2s[i]
            g_out = grad[p0:p1].permute(2, 0, 1).reshape(-1, c)              # (N*b, C)
            torch.addmm(g_w3, g_out.T, h2, out=g_w3)
            g2 = g_out * w3 if c == 1 else g_out @ w3                          # (N*b, H)
            g2 = _threshold_backward(g2, h2, 0.0) if act == "relu" else _tanh_backward(g2, h2)
            torch.addmm(g_w2, g2.T, h1, out=g_w2)
            g_b2 += g2.sum(0)
            g1 = _tanh_backward(g2 @ w2, h1).view(n, -1)                     # (N, b*H)
            torch.sum(g1, 0, out=g_bias1[cols])
            torch.mm(feats_t, g1, out=g_weight2[:, cols])
            if g_feats is not None:
                torch.addmm(g_feats, g1, weight2[:, cols].T, out=g_feats)
        # Fold the per-patch weight's gradient back (see `forward`): batched products
        # over the patches (for w1) and over the hidden units (for the rotation).
        g_cos_rows, g_sin_rows = g_weight[:f], g_weight[f:]                   # (F, B, H)
        rot_t = torch.stack([cos_b.T, sin_b.T], dim=1)                         # (F, 2, B)
        p_cos, p_sin = torch.bmm(rot_t, g_cos_rows), torch.bmm(rot_t, g_sin_rows)  # (F, 2, H)
        g_w1 = torch.cat([(p_cos[:, 0] - p_sin[:, 1]).T, (p_cos[:, 1] + p_sin[:, 0]).T], dim=1)
        w_cs = torch.stack([w1[:, :f].T, w1[:, f:].T], dim=2)                  # (F, H, 2)
        q_cos, q_sin = torch.bmm(g_cos_rows, w_cs), torch.bmm(g_sin_rows, w_cs)  # (F, B, 2)
        g_cos = (q_cos[..., 0] + q_sin[..., 1]).T                              # (B, F)
        g_sin = (q_cos[..., 1] - q_sin[..., 0]).T
        return (g_feats, g_cos, g_sin, g_w1, g_bias1.view(b, h), g_w2, g_b2, g_w3, g_b3,
                None, None)
