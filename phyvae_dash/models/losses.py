"""Boundary losses on latent-mean maps of contiguous tiles of the scan grid.

Why total variation: by the coarea formula ``TV(z) = integral of length({z = t}) dt``,
so for a piecewise-constant latent map TV is the sum over walls of (jump height x wall
length). Minimising it shortens domain walls, which is the phyVAE physics prior
("minimise the total length of discontinuities"), and unlike the authors' term it has a
gradient.

Normalisation (why the weight means the same at any tile size): `boundary_loss`
divides each tile's TV by its number of neighbouring pixel pairs per direction,
``T (T - 1)`` for a ``T x T`` tile. Over random tile offsets the expected TV of a tile is
(wall length per pixel pair of the whole map) x (pairs in the tile), so the normalised
value is an unbiased estimate of the *wall-length density* of the whole latent map
(grid steps of wall per grid point, per unit jump), whatever the tile size. (Dividing
by the tile side instead would make a straight wall across a tile cost 1, but the
expected value would grow with the tile side.) The loss then reads: total wall length
of the latent maps divided by the number of patches, so ``boundary_weight`` is the
price, in nats per patch-equivalent, of one grid step of wall with a unit jump. ``z`` is in units of its prior scale (the prior is
N(0, 1)), so a jump of 1 means one prior standard deviation.

Scale: TV is (jump x wall length), so it can be lowered without shortening any wall by
shrinking every latent towards 0, and the KL term does not resist that.
``scale="spread"`` divides each latent by its spread (standard deviation) over all the
tiles of the batch first. The result does not change when a latent map is scaled, so
the only way to lower it is fewer or shorter walls, and the jump is measured relative
to the contrast between domains: for two domains covering fractions ``f`` and
``1 - f`` of the tiles, a clean wall costs ``length / sqrt(f (1 - f))``, at least twice
its length. A small floor on the spread (``min_spread``, prior units) keeps a latent
the model leaves unused (flat up to noise) from being scored as a map made entirely of
walls. `fit` nevertheless uses ``scale="prior"`` by default: measured on the phantoms,
the shrinking does not hurt segmentation, while the scale-free form rewards a latent
for encoding whatever varies most smoothly in space (see `fit`'s ``boundary_units``).
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_EPS = 0.05
KINDS = ("tv", "anisotropic")
SCALES = ("spread", "prior")
#: Floor of the spread in ``scale="spread"`` (prior std): an informative latent spreads
#: over about one prior std, an unused one over a few hundredths.
DEFAULT_MIN_SPREAD = 0.1


def _differences(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along y and x, zero past the last row/column (Neumann)."""
    dy = torch.zeros_like(z)
    dx = torch.zeros_like(z)
    dy[..., :-1, :] = z[..., 1:, :] - z[..., :-1, :]
    dx[..., :, :-1] = z[..., :, 1:] - z[..., :, :-1]
    return dy, dx


def boundary_loss(z_tiles: torch.Tensor, kind: str = "tv", eps: float = DEFAULT_EPS,
                  normalize: bool = True, reduction: str = "mean", scale: str = "prior",
                  min_spread: float = DEFAULT_MIN_SPREAD) -> torch.Tensor:
    """Total variation of latent-mean maps on tiles of the scan grid (differentiable).

    Parameters
    ----------
    z_tiles : torch.Tensor
        ``(n_tiles, n_latents, Ty, Tx)``: posterior means on contiguous tiles of the
        scan grid, in units of the prior scale.
    kind : {"tv", "anisotropic"}
        ``"tv"``: isotropic ``sum sqrt(dy^2 + dx^2 + eps^2) - eps`` (rotation-fair:
        a diagonal wall costs its Euclidean length); ``"anisotropic"``:
        ``sum |dy| + |dx|``.
    eps : float
        Smoothing of the isotropic form near zero gradient (a flat map costs 0; a
        unit step costs ``1 - eps + O(eps^2)`` per wall step).
    normalize : bool
        Divide each tile's TV by its number of pixel pairs per direction,
        ``T (T - 1)`` (wall-length density; see the module docstring). ``False`` gives the raw wall length x jump height.
    scale : {"prior", "spread"}
        Units of the jump: ``"prior"`` takes ``z`` as it is (prior std);
        ``"spread"`` first divides each latent by ``sqrt(spread^2 + min_spread^2)``,
        where spread is its standard deviation over all tiles (kept in the graph, so
        the loss cannot be lowered by shrinking the latents; see the module docstring;
        ``eps`` is then in those units too).
    min_spread : float
        Floor of the spread for ``scale="spread"``.
    reduction : {"mean", "none"}
        ``"mean"``: sum over latents, mean over tiles (a scalar);
        ``"none"``: ``(n_tiles, n_latents)``.

    Returns
    -------
    torch.Tensor

    See Also
    --------
    reference_boundary_term : the authors' gradient-free term, for comparison.
    phyvae_dash.models.train.fit : trains with this loss on tiles of the scan grid.

    References
    ----------
    .. [1] A. Biswas, M. Ziatdinov, S. V. Kalinin, "Combining variational autoencoders
       and physical bias for improved microscopy data analysis", *Mach. Learn.: Sci.
       Technol.* (2023), doi:10.1088/2632-2153/acf6a9.
    .. [2] L. I. Rudin, S. Osher, E. Fatemi, "Nonlinear total variation based noise
       removal algorithms", *Physica D* 60, 259-268 (1992),
       doi:10.1016/0167-2789(92)90242-F.

    Examples
    --------
    A unit step across an 8 x 8 tile has a wall 8 grid steps long:

    >>> z = torch.zeros(1, 1, 8, 8); z[..., 4:] = 1.0
    >>> float(boundary_loss(z, kind="anisotropic", normalize=False))
    8.0
    >>> round(float(boundary_loss(z, normalize=False, eps=1e-3)), 2)
    7.99

    With ``scale="spread"`` the value does not change when the map is scaled:

    >>> a = boundary_loss(z, scale="spread", min_spread=0.0)
    >>> bool(torch.isclose(a, boundary_loss(10 * z, scale="spread", min_spread=0.0)))
    True
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    if z_tiles.ndim != 4:
        raise ValueError(f"z_tiles must be (n_tiles, n_latents, Ty, Tx), got {tuple(z_tiles.shape)}")
    z = z_tiles.float()
    if scale == "spread":
        spread = z.transpose(0, 1).reshape(z.shape[1], -1).std(dim=1)
        z = z / torch.sqrt(spread ** 2 + min_spread ** 2).view(1, -1, 1, 1)
    dy, dx = _differences(z)
    if kind == "tv":
        tv = torch.sqrt(dy ** 2 + dx ** 2 + eps ** 2) - eps
    else:
        tv = dy.abs() + dx.abs()
    tv = tv.sum(dim=(-2, -1))
    if normalize:
        ty, tx = z_tiles.shape[-2:]
        tv = tv / max(1.0, (ty * (tx - 1) + (ty - 1) * tx) / 2)
    if reduction == "none":
        return tv
    return tv.sum(dim=1).mean()


def reference_boundary_term(z_tiles, sigma_spatial: float = 5.0) -> np.ndarray:
    """The authors' physics term per tile (NumPy, so it carries no gradient).

    Each latent map of a tile is min-max normalised, denoised with a bilateral filter
    (``sigma_spatial=5``), and the Scharr edge magnitudes are summed; the term is the
    mean over latents. In the authors' training every ELBO term of the batch is then
    multiplied by ``(w + term)``.

    Parameters
    ----------
    z_tiles : torch.Tensor or numpy.ndarray
        ``(n_tiles, n_latents, Ty, Tx)``.

    Returns
    -------
    numpy.ndarray
        ``(n_tiles,)``.

    See Also
    --------
    boundary_loss : the differentiable total-variation form.

    References
    ----------
    .. [1] A. Biswas, M. Ziatdinov, S. V. Kalinin, "Combining variational autoencoders
       and physical bias for improved microscopy data analysis", *Mach. Learn.: Sci.
       Technol.* (2023), doi:10.1088/2632-2153/acf6a9.

    Examples
    --------
    >>> z = np.zeros((2, 2, 8, 8)); z[0, :, :, 4:] = 1.0
    >>> term = reference_boundary_term(z)
    >>> bool(term[0] > term[1] == 0)
    True
    """
    from skimage.filters import scharr
    from skimage.restoration import denoise_bilateral

    if isinstance(z_tiles, torch.Tensor):
        z_tiles = z_tiles.detach().float().cpu().numpy()
    z = np.asarray(z_tiles, dtype=np.float64)
    out = np.zeros(z.shape[0])
    for t in range(z.shape[0]):  # a handful of tiles per batch; the filter is 2-D only
        terms = []
        for m in z[t]:
            span = m.max() - m.min()
            if span <= 0:
                terms.append(0.0)
                continue
            m = (m - m.min()) / span
            m = denoise_bilateral(m, sigma_spatial=sigma_spatial)
            terms.append(float(scharr(m).sum()))
        out[t] = np.mean(terms)
    return out


# --------------------------------------------------------------------------- in training
def boundary_price(terms: dict, latent_dim: int, scale: str = "kl") -> torch.Tensor | float:
    """What one unit of wall density costs per unit of ``boundary_weight``.

    ``"kl"``: the batch's mean KL of the content latents (nats per patch, no gradient),
    i.e. the information the latent maps carry. Why: the TV of latent maps can be
    lowered for free by shrinking every latent towards the prior mean, and with a fixed
    price a weight that cleans one image collapses the latents of a noisier one (where
    the latents carry less information). Pricing walls in units of that information
    makes collapse no cheaper than keeping the domains, and makes the weight a
    dimensionless fraction, the same for any patch size, channel count or noise level.
    ``"none"``: a fixed price of 1 nat per patch.
    """
    if scale == "none":
        return 1.0
    mu, std = terms["mu"][:, :latent_dim], terms["std"][:, :latent_dim]
    kl = 0.5 * (mu ** 2 + std ** 2 - 1.0) - torch.log(std)
    return kl.sum(1).mean().detach()


class BoundaryTerm:
    """How `fit` combines a batch's negative ELBO with a boundary term.

    A term is called once per step with the batch's per-patch negative ELBO
    ``nelbo`` ``(B,)``, the latent means on the batch's tiles ``z_tiles``
    ``(n_tiles, latents, Ty, Tx)``, the model's loss terms, and the weight for this
    epoch (after the ramp); it returns ``(loss, boundary value)``, the scalar to
    minimise and the boundary term for the loss history. Subclass it, or pass any
    callable of that signature as ``fit(..., boundary_term=...)``, to try another prior.
    """

    def __call__(self, nelbo: torch.Tensor, z_tiles: torch.Tensor, terms: dict,
                 weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class TotalVariationTerm(BoundaryTerm):
    """ELBO + weight x price x TV of the latent maps (`boundary_loss`, `boundary_price`)."""

    def __init__(self, kind: str = "tv", eps: float = DEFAULT_EPS, units: str = "prior",
                 scale: str = "kl"):
        self.kind, self.eps, self.units, self.scale = kind, eps, units, scale

    def __call__(self, nelbo, z_tiles, terms, weight):
        tv = boundary_loss(z_tiles, kind=self.kind, eps=self.eps, scale=self.units)
        price = boundary_price(terms, z_tiles.shape[1], self.scale)
        return nelbo.mean() + weight * price * tv, tv


class ReferenceTerm(BoundaryTerm):
    """The authors' form: every ELBO term of a tile times ``(weight + term)``, where the
    term (`reference_boundary_term`) carries no gradient."""

    def __call__(self, nelbo, z_tiles, terms, weight):
        term = reference_boundary_term(z_tiles)
        mult = torch.as_tensor(weight + term, dtype=nelbo.dtype, device=nelbo.device)
        loss = (nelbo.view(z_tiles.shape[0], -1) * mult[:, None]).mean()
        # float32: MPS has no float64
        return loss, torch.tensor(float(term.mean()), device=nelbo.device)


class NoTerm(BoundaryTerm):
    """A plain VAE: the ELBO alone."""

    def __call__(self, nelbo, z_tiles, terms, weight):
        return nelbo.mean(), torch.zeros((), device=nelbo.device)


def boundary_term_for(kind: str, eps: float = DEFAULT_EPS, units: str = "prior",
                      scale: str = "kl") -> BoundaryTerm:
    """The term `fit` uses for ``boundary_loss=kind`` ("tv", "anisotropic", "reference",
    "none")."""
    if kind == "reference":
        return ReferenceTerm()
    if kind == "none":
        return NoTerm()
    return TotalVariationTerm(kind, eps=eps, units=units, scale=scale)
