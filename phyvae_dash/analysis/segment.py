"""Domains from latent maps: labels, their boundaries and the boundary length.

A fit result holds latent maps ``z_mean`` with dims ``("latent", "y", "x")`` on the
patch-centre grid. :func:`segment` clusters the latent vectors of all grid cells into
domains and returns an integer label map on the same grid. :func:`boundary_map`,
:func:`boundary_length` and :func:`domain_table` describe the walls and domains of any
label map (a segmentation or a ground truth) in the grid's physical units.

Labels are ``0 .. n_domains - 1``; cells whose latents are not finite get ``-1`` and are
ignored by the boundary functions and by :mod:`phyvae_dash.analysis.metrics`.
"""
from __future__ import annotations

import json

import numpy as np
import pint
import xarray as xr
from scipy import ndimage
from threadpoolctl import threadpool_limits

from ..data.units import UREG, convert
from ..errors import DataError, SettingsError
from .maps import label_blocks, smooth_lazy, smooth_maps, subsample

METHODS = ("auto", "gmm", "tied", "kmeans", "otsu")
MAX_DOMAINS = 8
CRITERIA = ("coherence", "merge", "bic", "icl")
#: ``criterion="coherence"``: the count is the largest split whose least coherent
#: domain keeps at least this fraction of the best split's spatial coherence.
COHERENCE_RATIO = 0.8
#: ``criterion="coherence"``: a split less coherent than this is noise, not domains.
MIN_COHERENCE = 0.2
#: ``criterion="coherence"``: beyond two domains, the latents must jump across every
#: wall by at least this many times their typical step between neighbours in a domain.
WALL_CONTRAST = 2.0
#: ``criterion="coherence"``: two clusters whose wall is a smaller jump than this
#: (in the same units) are one domain cut along a drift of its latents.
SPLIT_CONTRAST = 1.5
#: ``criterion="merge"``: two mixture components whose soft assignments overlap more
#: than this (Bhattacharyya coefficient of their responsibilities) are one domain. Two
#: equal Gaussian clusters reach it at a separation of about 4.3 standard deviations.
MERGE_OVERLAP = 0.1
# multi-Otsu searches all threshold combinations: beyond 5 classes it gets slow.
MAX_OTSU_CLASSES = 5
# BIC model selection fits up to MAX_DOMAINS mixtures; a random subset of this many
# cells decides the count as well as all of them would, in a fraction of the time.
BIC_SAMPLE = 20_000
# Fit settings copied onto the labels (prefixed "fit_") so a label map says where it
# came from even when saved on its own.
FIT_KEYS = (
    "method", "model", "transform", "patch_size", "stride", "latent_dim",
    "boundary_weight", "epochs", "seed", "model_id", "n_components",
)


class Length(float):
    """A float that also carries its physical ``units`` (``attrs["units"]``).

    It behaves as a plain ``float`` in arithmetic, comparisons and formatting;
    arithmetic results are plain floats without units. `to` converts it (through pint).

    Examples
    --------
    >>> length = Length(12.5, units="nm")
    >>> length + 1.0, length.units, length.attrs
    (13.5, 'nm', {'units': 'nm'})
    >>> length.to("µm")
    Length(0.0125, units='µm')
    """

    def __new__(cls, value: float, units: str = "px"):
        self = super().__new__(cls, value)
        self.attrs = {"units": str(units)}
        return self

    @property
    def units(self) -> str:
        return self.attrs["units"]

    @property
    def quantity(self) -> pint.Quantity:
        """The length as a `pint.Quantity` (in `phyvae_dash.data.units.UREG`)."""
        return UREG.Quantity(float(self), self.units)

    def to(self, units: str) -> "Length":
        """The same length in other units (``"nm"``, ``"µm"``, ...)."""
        return Length(convert(float(self), self.units, units), units=units)

    def __repr__(self) -> str:
        return f"Length({float(self)!r}, units={self.units!r})"


# ----------------------------------------------------------------------------- inputs
def _latent_maps(result, latents) -> xr.DataArray:
    """The latent maps to segment, as a DataArray ``("latent", "y", "x")``."""
    if isinstance(result, xr.Dataset):
        if "z_mean" not in result:
            raise DataError(
                f"segment needs a fit result with a 'z_mean' variable; this Dataset has "
                f"{sorted(result.data_vars)}"
            )
        maps = result["z_mean"]
    elif isinstance(result, xr.DataArray):
        maps = result
    else:
        raise DataError(
            f"segment needs an xarray Dataset (a fit result) or DataArray of latent maps, "
            f"not {type(result).__name__}"
        )
    if maps.dims == ("y", "x"):
        maps = maps.expand_dims("latent")
    if set(maps.dims) != {"latent", "y", "x"}:
        raise DataError(f"latent maps need dims ('latent', 'y', 'x'), got {maps.dims}")
    maps = maps.transpose("latent", "y", "x")
    if latents is not None:
        wanted = [latents] if np.isscalar(latents) else list(latents)
        if not wanted:
            raise SettingsError("latents must name at least one latent")
        n = maps.sizes["latent"]
        bad = [i for i in wanted if not (isinstance(i, (int, np.integer)) and -n <= i < n)]
        if bad:
            raise SettingsError(
                f"latents must be indices into the {n} latent maps, got {bad}"
            )
        maps = maps.isel(latent=wanted)
    return maps


STANDARDIZE = ("global", "latent", None)


def _standard_scale(vectors: np.ndarray, how: str | None):
    """``(centre, scale)`` that bring the latent vectors to unit scale: ``(v - centre) / scale``.

    ``"global"`` divides every latent by one common scale (the root-mean-square of
    their standard deviations): the clustering becomes independent of the latents'
    units while a latent that barely varies (a collapsed VAE latent, a minor principal
    component) keeps its small weight. ``"latent"`` z-scores each latent on its own,
    which would blow such a latent's noise up to the weight of an informative one.
    Returned rather than applied, so that the blocks of a dask-backed map get the
    scale of the sample the clustering was fitted on.
    """
    centre = vectors.mean(axis=0)
    std = (vectors - centre).std(axis=0)
    if how == "latent":
        return centre, np.where(std > 0, std, 1.0)
    if how == "global":
        scale = np.sqrt(np.mean(std**2))
        return centre, np.full_like(std, scale if scale > 0 else 1.0)
    return centre, np.ones_like(std)


# -------------------------------------------------------------------------- clustering
def _information_criteria(vectors: np.ndarray, max_domains: int, seed: int):
    """BIC and ICL of Gaussian mixtures with 1..max_domains components.

    ICL (integrated completed likelihood, Biernacki et al. 2000) adds to BIC twice the
    entropy of the soft assignments: it penalises components that overlap, so it counts
    separated clusters rather than the Gaussians needed to fit each cluster's shape.
    """
    from scipy.special import entr
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    if len(vectors) > BIC_SAMPLE:
        vectors = vectors[rng.choice(len(vectors), BIC_SAMPLE, replace=False)]
    counts = list(range(1, min(max_domains, len(vectors)) + 1))
    bic, icl = [], []
    for k in counts:
        mixture = GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed)
        mixture.fit(vectors)
        bic.append(float(mixture.bic(vectors)))
        icl.append(bic[-1] + 2 * float(entr(mixture.predict_proba(vectors)).sum()))
    return counts, bic, icl


def _responsibility_overlap(resp: np.ndarray) -> np.ndarray:
    """Bhattacharyya coefficient between the columns of a responsibility matrix.

    ``1`` for two components that share every point equally, ``0`` for components
    that never claim the same point; the diagonal is set to 0.
    """
    mass = resp.sum(axis=0)
    root = np.sqrt(resp)
    overlap = (root.T @ root) / np.sqrt(np.outer(mass, mass) + 1e-300)
    np.fill_diagonal(overlap, 0.0)
    return overlap


def _merged_mixture(vectors: np.ndarray, max_domains: int, seed: int):
    """Count domains by BIC, then merge mixture components that overlap.

    BIC counts the Gaussians needed to fit the latent distribution, and a domain whose
    latents are not Gaussian (skewed, elongated, joined to another by wall cells) takes
    several. Merging, greedily, the pair of components whose responsibilities overlap
    most until none overlaps more than `MERGE_OVERLAP` (Hennig 2010, "Methods for
    merging Gaussian mixture components") counts separated clusters instead.

    Returns ``(n_domains, the function that labels vectors, info attrs)``: it labels
    these vectors, or others from the same maps (the blocks of a dask-backed result).
    """
    from sklearn.mixture import GaussianMixture

    counts, bic, icl = _information_criteria(vectors, max_domains, seed)
    k_bic = counts[int(np.argmin(bic))]
    info = {"bic": bic, "icl": icl, "bic_n_domains": counts, "bic_components": int(k_bic),
            "merge_overlap": float(MERGE_OVERLAP)}
    if k_bic == 1:
        return 1, lambda v: np.zeros(len(v), dtype=int), info
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), BIC_SAMPLE, replace=False)] \
        if len(vectors) > BIC_SAMPLE else vectors
    mixture = GaussianMixture(k_bic, covariance_type="full", n_init=2, random_state=seed)
    mixture.fit(sample)
    resp = mixture.predict_proba(vectors)
    groups = [[k] for k in range(k_bic)]
    while resp.shape[1] > 1:
        overlap = _responsibility_overlap(resp)
        i, j = np.unravel_index(int(np.argmax(overlap)), overlap.shape)
        if overlap[i, j] < MERGE_OVERLAP:
            break
        i, j = min(i, j), max(i, j)
        resp[:, i] += resp[:, j]
        resp = np.delete(resp, j, axis=1)
        groups[i] += groups.pop(j)

    def predict(v: np.ndarray) -> np.ndarray:
        parts = mixture.predict_proba(v)
        return np.stack([parts[:, g].sum(axis=1) for g in groups], axis=1).argmax(axis=1)

    return resp.shape[1], predict, info


def _neighbour_pairs(grid: np.ndarray):
    """Flat indices of the two cells of every 4-neighbour pair of a ``(y, x)`` grid."""
    index = np.arange(grid.size).reshape(grid.shape)
    first = np.concatenate([index[1:, :].ravel(), index[:, 1:].ravel()])
    second = np.concatenate([index[:-1, :].ravel(), index[:, :-1].ravel()])
    return first, second


def _same_label_fraction(grid: np.ndarray, n_labels: int):
    """Per label: its share of the 4-neighbour pair ends, and the fraction of those
    whose neighbour has the same label (pairs touching an invalid cell, -1, left out)."""
    first, second = (grid.ravel()[cells] for cells in _neighbour_pairs(grid))
    keep = (first >= 0) & (second >= 0)
    first, second = first[keep], second[keep]
    ends = np.bincount(first, minlength=n_labels) + np.bincount(second, minlength=n_labels)
    same = 2 * np.bincount(first[first == second], minlength=n_labels)
    return ends / max(ends.sum(), 1), same / np.maximum(ends, 1)


def spatial_coherence(grid: np.ndarray, n_labels: int) -> float:
    """How much more often than chance the least coherent label's neighbours share it.

    For each label: (fraction of its 4-neighbours with the same label - that fraction
    for a random labelling with the same sizes) / (1 - the random fraction), a kappa
    statistic: 1 for labels that form solid regions, 0 for salt-and-pepper. Returns the
    minimum over labels (-1 when a label has no valid neighbour pair).

    Examples
    --------
    >>> halves = np.repeat([[0] * 4 + [1] * 4], 8, axis=0)     # two solid regions
    >>> round(spatial_coherence(halves, 2), 2)
    0.86
    >>> checkerboard = np.indices((8, 8)).sum(axis=0) % 2      # every neighbour differs
    >>> spatial_coherence(checkerboard, 2)
    -1.0
    """
    share, same = _same_label_fraction(grid, n_labels)
    if (share <= 0).any() or (share >= 1).any():
        return -1.0
    return float(((same - share) / (1 - share)).min())


def _majority_labels(grid: np.ndarray, n_labels: int) -> np.ndarray:
    """Each valid cell's most frequent label in its 3 x 3 neighbourhood.

    Labels clustered from noisy latents follow the noise at a wall: the cells the noise
    pushed across the threshold are the ones that look alike, so pairs across such a
    wall would understate its jump. The majority places walls by the regions instead.
    """
    one_hot = (grid[None] == np.arange(n_labels)[:, None, None]).astype(float)
    votes = ndimage.uniform_filter(one_hot, size=(1, 3, 3), mode="nearest")
    return np.where(grid >= 0, votes.argmax(axis=0), -1)


def wall_contrast(grid: np.ndarray, values: np.ndarray, n_labels: int) -> float:
    """The weakest wall's latent jump, in units of the typical step inside domains.

    For every pair of labels that meet (after a 3 x 3 majority filter of the labels),
    the median latent distance between the two cells of their neighbour pairs, divided
    by the median over pairs of cells with the same label; the minimum over label
    pairs (those meeting at 3 or more pairs when any do). ``values`` are the
    ``(cells, latents)`` features, ``grid`` the labels ``(y, x)`` (-1: invalid). NaN
    when no two labels meet.

    Examples
    --------
    >>> halves = np.repeat([[0] * 4 + [1] * 4], 8, axis=0)
    >>> latent = halves + np.random.default_rng(0).normal(0, 0.05, halves.shape)
    >>> wall_contrast(halves, latent.reshape(-1, 1), 2) > 10   # a jump of 1 vs noise
    True
    """
    first, second = _neighbour_pairs(grid)
    labels = _majority_labels(grid, n_labels).ravel()
    keep = (labels[first] >= 0) & (labels[second] >= 0)
    first, second = first[keep], second[keep]
    step = np.linalg.norm(values[first] - values[second], axis=1)
    low = np.minimum(labels[first], labels[second])
    high = np.maximum(labels[first], labels[second])
    inside = low == high
    if inside.sum() == 0 or inside.all():
        return float("nan")
    typical = max(float(np.median(step[inside])), 1e-12)
    pair = low * n_labels + high
    ids, counts = np.unique(pair[~inside], return_counts=True)
    if (counts >= 3).any():
        ids = ids[counts >= 3]
    jumps = ndimage.median(step, labels=np.where(inside, -1, pair), index=ids)
    return float(np.min(jumps) / typical)


def _coherent_count(features: np.ndarray, valid: np.ndarray, shape, max_domains: int,
                    seed: int):
    """Count domains as the largest k-means split whose clusters are spatial domains.

    Microscopy domains are contiguous regions of the scan grid with walls between
    them. Splitting a domain in latent space along its noise gives interleaved labels
    of low spatial coherence (`spatial_coherence`), and splitting it along a smooth
    drift of its latents gives regions whose "walls" are no jump of the latents
    (`wall_contrast`), while splitting two real domains gives solid regions with a
    jump between them. Feature-space criteria (BIC, merged mixtures) cannot tell these
    apart when the domains' latent clusters overlap. A split is a candidate when its
    coherence is at least `MIN_COHERENCE` and its weakest wall at least
    `SPLIT_CONTRAST` (two clusters) or `WALL_CONTRAST` (more); the count is the
    largest candidate whose coherence is at least `COHERENCE_RATIO` times the best
    candidate's, and 1 when there is none. The thresholds were chosen on the latents
    of ``benchmarks/auto_settings.py``'s automatic fits of every family (phantom seeds
    1 and 10, 128 px) and checked on seeds 11 and 12 and the real PZT file; the
    benchmark prints the rate for this and for ``"merge"``:
    ``python benchmarks/auto_settings.py --size 128 --visits 40000 --sweep 16 --no-noise --pzt``.

    Returns ``(n_domains, the fitted k-means' predict, info attrs)``.
    """
    from sklearn.cluster import KMeans

    counts = list(range(2, min(max_domains, len(features)) + 1))
    grid = np.full(valid.shape, -1, dtype=int)
    cell_values = np.zeros((valid.size, features.shape[1]))
    cell_values[valid] = features
    coherence, contrast, models = [], [], []
    for k in counts:
        model = KMeans(k, n_init=3, random_state=seed).fit(features)
        grid[valid] = model.labels_
        coherence.append(spatial_coherence(grid.reshape(shape), k))
        contrast.append(wall_contrast(grid.reshape(shape), cell_values, k))
        models.append(model)
    info = {"coherence": coherence, "wall_contrast": contrast, "coherence_n_domains": counts,
            "coherence_ratio": float(COHERENCE_RATIO), "min_coherence": float(MIN_COHERENCE),
            "min_wall_contrast": float(WALL_CONTRAST),
            "min_split_contrast": float(SPLIT_CONTRAST)}
    # a split counts only if its clusters are regions with a jump at their walls
    walls = [SPLIT_CONTRAST if k == 2 else WALL_CONTRAST for k in counts]
    splits = [i for i, k in enumerate(counts)
              if coherence[i] >= MIN_COHERENCE and contrast[i] >= walls[i]]
    if not splits:
        return 1, lambda v: np.zeros(len(v), dtype=int), info
    reference = max(coherence[i] for i in splits)
    best = max(i for i in splits if coherence[i] >= COHERENCE_RATIO * reference)
    return counts[best], models[best].predict, info


def _clusterer(vectors: np.ndarray, n_domains: int, method: str, seed: int):
    """Fit the clustering on ``vectors``; return the function that labels vectors
    (these, or others from the same maps: the blocks of a dask-backed result)."""
    if n_domains == 1:
        return lambda v: np.zeros(len(v), dtype=int)
    if method in ("gmm", "tied"):
        from sklearn.mixture import GaussianMixture

        kind = "full" if method == "gmm" else "tied"
        return GaussianMixture(n_domains, covariance_type=kind, n_init=3,
                               random_state=seed).fit(vectors).predict
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_domains, n_init=10, random_state=seed).fit(vectors).predict
    # otsu: thresholds on the single latent, classes ordered by value already
    from skimage.filters import threshold_multiotsu

    values = vectors[:, 0]
    counts, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    thresholds = threshold_multiotsu(hist=(counts, centres), classes=n_domains)
    # Otsu splits between histogram bins but reports the centre of the last bin of the
    # lower class; thresholding values at that centre would move the upper half of that
    # bin into the next class. The bin's upper edge is the split Otsu actually chose.
    return lambda v: np.digitize(v[:, 0], thresholds + (edges[1] - edges[0]) / 2)


def _label_order(raw: np.ndarray, key: np.ndarray, n_domains: int) -> np.ndarray:
    """Cluster number -> label, ordered by the mean of ``key`` (the first latent) in each
    cluster, so that colours are stable; -1 for clusters that received no cell (labels
    stay contiguous)."""
    present = np.unique(raw)
    means = np.array([key[raw == k].mean() for k in present])
    order = present[np.argsort(means, kind="stable")]
    lookup = np.full(max(n_domains, raw.max() + 1), -1, dtype=int)
    lookup[order] = np.arange(len(order))
    return lookup


def segment(
    result: xr.Dataset | xr.DataArray,
    n_domains: int | None = None,
    method: str = "auto",
    *,
    latents=None,
    smooth: float = 0.0,
    standardize: str | None = "global",
    criterion: str = "coherence",
    max_domains: int = MAX_DOMAINS,
    seed: int = 0,
) -> xr.DataArray:
    """Cluster the latent maps of a fit result into domains.

    Parameters
    ----------
    result : xarray.Dataset or xarray.DataArray
        A fit result (or :func:`~phyvae_dash.analysis.baselines.pca_baseline` result)
        with ``z_mean`` of dims ``("latent", "y", "x")``, or such a DataArray of latent
        maps itself (a single ``("y", "x")`` map also works).
    n_domains : int, optional
        Number of domains. ``None`` chooses 1 to ``max_domains`` (for ``"otsu"``: up
        to 5) by ``criterion``; ``attrs["n_domains_chosen_by"]`` then names the
        criterion, and the criterion's scores are in ``attrs`` (``"coherence"``,
        or ``"bic"`` and ``"icl"`` for each count in ``attrs["bic_n_domains"]``).
    method : {"auto", "gmm", "tied", "kmeans", "otsu"}
        ``"auto"`` (default): ``"kmeans"`` when ``n_domains`` is given or counted by
        ``criterion="coherence"`` or ``"merge"``, ``"gmm"`` when it is chosen by BIC or
        ICL (the mixture it selected). Why not a mixture for a given count: latent
        clusters are not Gaussian (tight domain clusters joined by a bridge of wall
        cells, skewed tails), and a mixture spends a broad
        component on the bridge or a tail, or (tied) shifts the threshold deep into
        a minority domain; k-means only places the threshold between the cluster
        centres. Measured on the four phantoms (128 and 256 px, fit seeds 0-2, boundary
        weights 0-10; ARI full / tied / k-means): graphene (128 px, mean) 0.77 / 0.89 /
        0.92; PFM (128 px, mean) 0.45 / 0.70 / 0.74; NiO-LSMO 256 px seeds 0-2 0.93,
        0.77, 0.83 / 0.94, 0.93, 0.58 / 0.90, 0.93, 0.95. The stripe phantom (four
        domains, two latents) is the exception: see ``features.SEGMENT_PRESETS``.
        ``"gmm"``: Gaussian mixture (full covariances) on the standardised latent
        vectors (see ``standardize``). ``"tied"``: the same with one covariance shared
        by all components. ``"kmeans"``: k-means on the same vectors.
        ``"otsu"``: multi-Otsu thresholds of one latent map (the first of
        ``latents``), as the phyVAE authors show domains.
    latents : int or list of int, optional
        Which latents to use (indices along ``latent``); default all of them, or the
        first one for ``"otsu"``.
    smooth : float, optional
        Standard deviation, in grid steps, of a Gaussian filter applied to each latent
        map before clustering; 0 (default) uses the maps as they are.
    standardize : {"global", "latent", None}
        How latents are scaled before ``"gmm"``/``"kmeans"``: ``"global"`` (default)
        centres each latent and divides all by one common scale, so units do not
        matter but a latent that barely varies stays unimportant; ``"latent"``
        z-scores each latent separately (equal weight to every latent, noise-only ones
        included); ``None`` only centres.
    criterion : {"coherence", "merge", "bic", "icl"}
        How ``n_domains=None`` chooses. ``"coherence"`` (default): k-means splits into
        2 to ``max_domains`` clusters, each scored on the grid by the spatial coherence
        of its least coherent cluster (:func:`spatial_coherence`: 1 for solid regions,
        0 for salt-and-pepper) and by the latent jump across its weakest wall
        (:func:`wall_contrast`). Splits with coherence of at least `MIN_COHERENCE`
        and walls of at least `SPLIT_CONTRAST` (two clusters) or `WALL_CONTRAST`
        (more) are candidates; the count is the largest candidate with at least
        `COHERENCE_RATIO` times the best candidate's coherence, 1 when there is none
        (noise, or one domain with drifting latents). Domains are contiguous regions with walls,
        so this counts them even where their latent clusters overlap;
        ``attrs["coherence"]`` and ``attrs["wall_contrast"]`` hold the scores of
        each count in ``attrs["coherence_n_domains"]``. ``"merge"``: the BIC-best
        mixture, then components merged while their soft assignments overlap
        (`MERGE_OVERLAP`); the labels are those of the merged mixture
        (``method="auto"``/``"gmm"``) and ``attrs["bic_components"]`` says how many
        components BIC wanted; it under-counts domains whose latent clusters overlap.
        ``"bic"``/``"icl"``: the lowest Bayesian information criterion, or
        the lowest ICL (BIC plus twice the entropy of the soft assignments). BIC counts
        the Gaussians needed to *fit* the latent distribution and tends to split one
        domain whose latents are not Gaussian (wall cells between two domains, elongated
        clusters) into several; ICL counts separated clusters and over-segments less.
    max_domains : int, optional
        Largest count tried when ``n_domains`` is ``None``.
    seed : int, optional
        Seed of the clustering's random initialisation (results are deterministic).

    Returns
    -------
    xarray.DataArray
        Integer labels ``0 .. n_domains - 1`` with dims ``("y", "x")`` and the result's
        coordinates; ``-1`` where a latent is not finite. Labels are ordered by the mean
        of the first used latent in each domain. ``attrs`` hold ``method``,
        ``n_domains``, ``n_domains_chosen_by`` (``"user"`` or the criterion),
        ``n_domains_found`` (fewer than ``n_domains`` when a cluster got no cell; labels
        stay contiguous), ``latents``, ``smooth``, ``standardize``, ``seed``,
        ``settings`` (all of them as JSON) and the fit's key settings prefixed ``fit_``
        (``fit_model``, ``fit_patch_size``, ...).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> z = np.zeros((2, 10, 12))
    >>> z[0, :, 6:] = 3.0                      # two domains: left and right half
    >>> z += np.random.default_rng(0).normal(0, 0.1, z.shape)
    >>> maps = xr.DataArray(z, dims=("latent", "y", "x"))
    >>> labels = segment(maps, n_domains=2)
    >>> labels.values[0, :]
    array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    >>> counted = segment(maps)               # the count from spatial coherence
    >>> counted.attrs["n_domains"], counted.attrs["n_domains_chosen_by"]
    (2, 'coherence')
    """
    if method not in METHODS:
        raise SettingsError(f"segment method must be one of {METHODS}, not {method!r}")
    if n_domains is not None and (
        not isinstance(n_domains, (int, np.integer)) or n_domains < 1
    ):
        raise SettingsError(f"n_domains must be a positive integer or None, got {n_domains!r}")
    if method == "otsu" and n_domains is not None and not 1 <= n_domains <= MAX_OTSU_CLASSES:
        raise SettingsError(
            f"otsu segments into 1 to {MAX_OTSU_CLASSES} domains, not {n_domains}; "
            f"use method='gmm' for more"
        )
    if smooth < 0:
        raise SettingsError(f"smooth must be >= 0 grid steps, got {smooth!r}")
    if criterion not in CRITERIA:
        raise SettingsError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
    if standardize not in STANDARDIZE:
        raise SettingsError(f"standardize must be one of {STANDARDIZE}, not {standardize!r}")

    if method == "auto":
        method = "gmm" if n_domains is None and criterion in ("bic", "icl") else "kmeans"
    if method == "otsu" and latents is None:
        latents = [0]
    maps = _latent_maps(result, latents)
    if method == "otsu" and maps.sizes["latent"] != 1:
        raise SettingsError(
            f"otsu thresholds one latent map; latents={latents!r} selects "
            f"{maps.sizes['latent']}"
        )
    used = list(range(maps.sizes["latent"])) if latents is None else (
        [int(latents)] if np.isscalar(latents) else [int(i) for i in latents]
    )

    lazy = maps.chunks is not None  # dask-backed: fit on a subsample, label per block
    if lazy:
        data = smooth_lazy(maps.data, smooth) if smooth > 0 else maps.data
        values = subsample(data)
    else:
        values = np.asarray(maps.values, dtype=float)
        if smooth > 0:
            values = smooth_maps(values, smooth)
    n_lat, n_y, n_x = values.shape
    vectors = values.reshape(n_lat, -1).T
    valid = np.isfinite(vectors).all(axis=1)
    if not valid.any():
        raise DataError("segment: no grid cell has finite latent values")
    vectors = vectors[valid]
    # otsu thresholds raw values (scale-free anyway); clusterers need comparable scales
    centre, scale = _standard_scale(vectors, standardize if method != "otsu" else None)
    if method == "otsu":  # otsu thresholds raw values (scale-free anyway)
        centre, scale = np.zeros_like(centre), np.ones_like(scale)
    features = (vectors - centre) / scale

    if n_domains is not None and n_domains > len(features):
        raise SettingsError(
            f"n_domains={n_domains} exceeds the {len(features)} grid cells to segment"
        )
    # These problems are small (a few thousand cells, a few latents): one thread is
    # fast, while BLAS/OpenMP worker threads that spin-wait on a busy CPU make them
    # far slower when several processes share the cores.
    with threadpool_limits(limits=1):
        predict = None
        if n_domains is None:
            limit = min(max_domains, MAX_OTSU_CLASSES) if method == "otsu" else max_domains
            if criterion == "coherence":
                n_domains, coherent, info = _coherent_count(features, valid, (n_y, n_x),
                                                            limit, seed)
                attrs_bic = {"n_domains_chosen_by": "coherence", **info}
                if method == "kmeans":
                    predict = coherent
            elif criterion == "merge":
                n_domains, merged, info = _merged_mixture(features, limit, seed)
                attrs_bic = {"n_domains_chosen_by": "merge", **info}
                if method == "gmm":
                    predict = merged
            else:
                counts, bic, icl = _information_criteria(features, limit, seed)
                n_domains = counts[int(np.argmin(bic if criterion == "bic" else icl))]
                attrs_bic = {"n_domains_chosen_by": criterion, "bic": bic, "icl": icl,
                             "bic_n_domains": counts}
        else:
            n_domains = int(n_domains)
            attrs_bic = {"n_domains_chosen_by": "user"}
        # one distinct value cannot be split: every cell is one domain
        if np.ptp(features, axis=0).max() == 0:
            predict = lambda v: np.zeros(len(v), dtype=int)  # noqa: E731
        elif predict is None:
            predict = _clusterer(features, n_domains, method, seed)
        raw = predict(features)
    lookup = _label_order(raw, vectors[:, 0], n_domains)
    sorted_labels = lookup[raw]

    if lazy:
        labels = label_blocks(data, centre, scale, predict, lookup)
        n_y, n_x = maps.sizes["y"], maps.sizes["x"]
    else:
        labels = np.full(n_y * n_x, -1, dtype=int)
        labels[valid] = sorted_labels
    settings = {
        "method": method,
        "n_domains": int(n_domains),
        "latents": used,
        "smooth": float(smooth),
        "standardize": str(standardize),
        "criterion": criterion,
        "max_domains": int(max_domains),
        "seed": int(seed),
    }
    attrs = {**settings, **attrs_bic, "n_domains_found": int(len(np.unique(sorted_labels)))}
    attrs["settings"] = json.dumps(settings)
    source_attrs = result.attrs if isinstance(result, (xr.Dataset, xr.DataArray)) else {}
    for key in FIT_KEYS:
        value = source_attrs.get(key)
        if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
            attrs[f"fit_{key}"] = value.item() if isinstance(value, np.generic) else value
    coords = {dim: maps[dim] for dim in ("y", "x") if dim in maps.coords}
    return xr.DataArray(
        labels.reshape(n_y, n_x), dims=("y", "x"), coords=coords, name="labels", attrs=attrs
    )  # dask-backed for dask-backed maps


# --------------------------------------------------------------------------- boundaries
def _as_labels(labels) -> xr.DataArray:
    if isinstance(labels, xr.Dataset):
        if "labels" not in labels:
            raise DataError(
                f"expected a label map or a Dataset with 'labels', got {sorted(labels.data_vars)}"
            )
        labels = labels["labels"]
    if not isinstance(labels, xr.DataArray):
        labels = xr.DataArray(np.asarray(labels), dims=("y", "x"))
    if set(labels.dims) != {"y", "x"}:
        raise DataError(f"a label map needs dims ('y', 'x'), got {labels.dims}")
    return labels.transpose("y", "x")


def _label_edges(values: np.ndarray):
    """Masks of the label-changing edges between vertical and horizontal neighbours.

    ``vertical[i, j]`` is the edge between cells ``(i, j)`` and ``(i + 1, j)``;
    ``horizontal[i, j]`` between ``(i, j)`` and ``(i, j + 1)``. Edges touching an
    invalid cell (label < 0) are never walls.
    """
    vertical = (values[1:, :] != values[:-1, :]) & (values[1:, :] >= 0) & (values[:-1, :] >= 0)
    horizontal = (values[:, 1:] != values[:, :-1]) & (values[:, 1:] >= 0) & (values[:, :-1] >= 0)
    return vertical, horizontal


def grid_step(labels: xr.DataArray, dim: str) -> float:
    """Spacing of a grid along ``dim`` in its physical units (1 if it has no coordinate).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> grid = xr.DataArray(np.zeros((3, 4)), dims=("y", "x"),
    ...                     coords={"y": [0.0, 2.5, 5.0], "x": np.arange(4.0)})
    >>> grid_step(grid, "y")
    2.5
    """
    if dim not in labels.coords or labels.sizes[dim] < 2:
        return 1.0
    # median: robust to a coordinate written with rounding noise
    return float(np.median(np.abs(np.diff(labels[dim].values.astype(float)))))


def grid_units(labels: xr.DataArray) -> str:
    """The physical units of a grid's ``y``/``x`` coordinates (``"px"`` if none)."""
    units = [
        labels[dim].attrs.get("units", "px") if dim in labels.coords else "px"
        for dim in ("y", "x")
    ]
    return units[0] if units[0] == units[1] else f"{units[0]} (y), {units[1]} (x)"


def boundary_map(labels) -> xr.DataArray:
    """Mark the cells on a domain wall: those with a 4-neighbour of another label.

    Both cells on either side of a wall are marked, so a straight wall is two cells
    wide.

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels ``("y", "x")`` (e.g. from :func:`segment`, or a phantom's
        ``labels``). Negative labels mark invalid cells and never form walls.

    Returns
    -------
    xarray.DataArray
        Boolean, same dims and coordinates.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> labels = xr.DataArray(np.repeat([[0, 0, 1, 1]], 2, axis=0), dims=("y", "x"))
    >>> boundary_map(labels).values.astype(int)
    array([[0, 1, 1, 0],
           [0, 1, 1, 0]])
    """
    labels = _as_labels(labels)
    # Not skimage.segmentation.find_boundaries: it would mark the cells beside invalid
    # (negative) ones as walls; these edge masks also give `boundary_length`.
    vertical, horizontal = _label_edges(np.asarray(labels.values))
    wall = np.zeros(labels.shape, dtype=bool)
    wall[1:, :] |= vertical
    wall[:-1, :] |= vertical
    wall[:, 1:] |= horizontal
    wall[:, :-1] |= horizontal
    return xr.DataArray(
        wall, dims=("y", "x"), coords=labels.coords, name="boundaries",
        attrs={"long_name": "domain wall cells"},
    )


def boundary_length(labels) -> Length:
    """Total length of the domain walls, in the grid's physical units.

    Walls run along the edges between neighbouring grid cells. Each edge between two
    vertically neighbouring cells with different labels adds one x step to the length,
    each horizontal one a y step: the result is the length of the wall polyline drawn
    along cell edges. A wall at an angle θ to the grid is therefore measured as a
    staircase, up to √2 times (at 45°) its straight length; compare lengths of maps
    measured the same way (as :func:`~phyvae_dash.analysis.metrics.boundary_length_ratio`
    does), not with lengths measured otherwise.

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels ``("y", "x")``; coordinates give the physical grid steps (a
        missing coordinate counts as a step of 1 px).

    Returns
    -------
    Length
        A ``float`` with ``.units`` / ``.attrs["units"]``: the ``units`` attribute of
        the ``y``/``x`` coordinates, ``"px"`` if there is none.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> step = np.zeros((8, 8), dtype=int); step[:, 4:] = 1     # a vertical wall
    >>> coords = {d: (d, np.arange(8) * 0.5, {"units": "nm"}) for d in ("y", "x")}
    >>> labels = xr.DataArray(step, dims=("y", "x"), coords=coords)
    >>> boundary_length(labels)                               # 8 cells x 0.5 nm
    Length(4.0, units='nm')
    """
    labels = _as_labels(labels)
    vertical, horizontal = _label_edges(labels.data)  # NumPy, or dask (summed per chunk)
    length = vertical.sum() * grid_step(labels, "x") + horizontal.sum() * grid_step(labels, "y")
    return Length(float(length), units=grid_units(labels))


def domain_table(labels) -> xr.Dataset:
    """Area, cell count and number of connected regions of each domain.

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels ``("y", "x")``; invalid cells (label < 0) are left out.

    Returns
    -------
    xarray.Dataset
        Indexed by ``domain``: ``n_cells``, ``area`` (physical units², one cell is
        y step × x step), ``fraction`` of the valid cells and ``n_regions`` (connected
        pieces, 4-connectivity).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> labels = xr.DataArray([[0, 1, 0], [0, 1, 0]], dims=("y", "x"))
    >>> table = domain_table(labels)
    >>> table.n_cells.values.tolist(), table.n_regions.values.tolist()
    ([4, 2], [2, 1])
    """
    labels = _as_labels(labels)
    values = np.asarray(labels.values)
    domains = np.unique(values[values >= 0])
    n_cells = np.array([(values == d).sum() for d in domains], dtype=int)
    n_regions = np.array([ndimage.label(values == d)[1] for d in domains], dtype=int)
    cell_area = grid_step(labels, "y") * grid_step(labels, "x")
    units = grid_units(labels)
    return xr.Dataset(
        {
            "n_cells": ("domain", n_cells),
            "area": ("domain", n_cells * cell_area, {"units": f"{units}^2"}),
            "fraction": ("domain", n_cells / max(n_cells.sum(), 1)),
            "n_regions": ("domain", n_regions),
        },
        coords={"domain": domains},
        attrs={"units": units},
    )
