"""Baselines to measure the VAE against, shaped like fit results.

:func:`pca_baseline` projects the same patch inputs a fit sees onto their first
principal components; the scores drawn on the scan grid play the role of latent maps,
so :func:`~phyvae_dash.analysis.segment.segment` turns them into PCA+GMM (or k-means,
Otsu) labels unchanged. The other baseline, the same VAE without the boundary loss, is
``phyvae_dash.fit(..., boundary_weight=0)``.
"""
from __future__ import annotations

import time

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from ..errors import SettingsError


def _patch_inputs(image: xr.DataArray, patch_size: int, stride: int, transform: str):
    """Inputs as ``(features (n_y, n_x, F), y coordinate, x coordinate, transform name)``.

    Uses the models' input transforms when they are available, so PCA sees exactly what
    the VAE sees; otherwise raw patches of the min-max normalised image.
    """
    try:
        from ..models.features import prepare_inputs
    except ImportError:
        prepare_inputs = None
    if prepare_inputs is not None:
        inputs = prepare_inputs(image, patch_size, stride, transform)
        data = np.asarray(inputs.data, dtype=np.float32)
        name = str(getattr(inputs, "transform", transform))
        y, x = inputs.y, inputs.x
    else:
        if transform != "patch":
            raise SettingsError(
                f"transform {transform!r} needs phyvae_dash.models.features, which is not "
                f"available; use transform='patch'"
            )
        from ..data.patches import extract_patches

        patches = extract_patches(image, patch_size, stride, normalization="minmax")
        data = np.asarray(patches.values, dtype=np.float32)
        name = "patch"
        y, x = patches["y"], patches["x"]
    return data.reshape(data.shape[0], data.shape[1], -1), y, x, name


def _grid_coord(values, image: xr.DataArray, dim: str):
    """A coordinate for the result grid, keeping the image's units."""
    if isinstance(values, xr.DataArray):
        attrs = dict(values.attrs)
        values = values.values
    else:
        attrs = {}
    if "units" not in attrs:
        attrs["units"] = image[dim].attrs.get("units", "px") if dim in image.coords else "px"
    return (dim, np.asarray(values, dtype=float), attrs)


def pca_baseline(
    image: xr.DataArray,
    patch_size: int,
    stride: int = 1,
    n_components: int = 2,
    transform: str = "patch",
    *,
    seed: int = 0,
) -> xr.Dataset:
    """Principal component scores of the patches, as a fit-result-shaped Dataset.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, channel])``, as for :func:`phyvae_dash.fit`.
    patch_size, stride : int
        Patch side and step between patch centres, in pixels.
    n_components : int, optional
        Number of principal components kept (the "latent" size).
    transform : str, optional
        Input transform (see ``phyvae_dash.models.features.prepare_inputs``);
        ``"patch"`` (default) uses the raw patches.
    seed : int, optional
        Seed for the randomised SVD used on large inputs.

    Returns
    -------
    xarray.Dataset
        ``z_mean`` with dims ``("latent", "y", "x")`` (the scores on the patch-centre
        grid) and ``explained_variance_ratio`` (``latent``); ``attrs`` hold
        ``method="pca"``, ``model="pca"``, ``patch_size``, ``stride``,
        ``n_components``, ``latent_dim``, ``transform``, ``seed`` and ``elapsed_s``.

    See Also
    --------
    phyvae_dash.models.train.fit : the VAE that this baseline is compared with.
    phyvae_dash.analysis.segment.segment : segments its result unchanged.
    sklearn.decomposition.PCA

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> image = xr.DataArray(np.random.default_rng(0).random((40, 40)), dims=("y", "x"))
    >>> result = pca_baseline(image, patch_size=8, stride=4)
    >>> result.z_mean.dims, result.z_mean.shape
    (('latent', 'y', 'x'), (2, 9, 9))
    """
    from sklearn.decomposition import PCA

    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise SettingsError(f"n_components must be a positive integer, got {n_components!r}")
    start = time.perf_counter()
    data, y, x, name = _patch_inputs(image, patch_size, stride, transform)
    n_y, n_x, n_features = data.shape
    if n_components > min(n_y * n_x, n_features):
        raise SettingsError(
            f"n_components={n_components} exceeds what {n_y * n_x} patches of "
            f"{n_features} features allow"
        )
    pca = PCA(n_components=int(n_components), random_state=seed)
    # one thread: as fast for this size, and immune to thread contention on a busy CPU
    with threadpool_limits(limits=1):
        scores = pca.fit_transform(data.reshape(n_y * n_x, n_features))
    z_mean = scores.T.reshape(n_components, n_y, n_x)
    return xr.Dataset(
        {
            "z_mean": (("latent", "y", "x"), z_mean.astype(np.float32)),
            "explained_variance_ratio": ("latent", pca.explained_variance_ratio_),
        },
        coords={
            "latent": np.arange(n_components),
            "y": _grid_coord(y, image, "y"),
            "x": _grid_coord(x, image, "x"),
        },
        attrs={
            "method": "pca",
            "model": "pca",
            "patch_size": int(patch_size),
            "stride": int(stride),
            "n_components": int(n_components),
            "latent_dim": int(n_components),
            "transform": name,
            "seed": int(seed),
            "elapsed_s": float(time.perf_counter() - start),
            **({"source": str(image.attrs["source"])} if "source" in image.attrs else {}),
        },
    )
