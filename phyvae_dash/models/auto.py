"""Settings chosen from the image itself: what ``fit(image)`` uses when told nothing.

The right patch size differs from scan to scan (a few pixels for relaxor nanodomains,
two or three lattice periods for a lattice, several correlation lengths for a texture),
so no fixed default serves them all. `choose_settings` reads the image's own
characteristic lengths and runs a few cheap label-free trials:

1. **Lattice period** (`features.detect_lattice_period`, at the lower threshold
   `AUTO_LATTICE_PEAK_RATIO`): when the power spectrum has sharp reflections, 3, 4
   and 5 periods (at least 12 px) join the candidate patch sizes, and every
   candidate's input is ``"fft+mean"`` (|FFT| sees the lattice's period, orientation
   and symmetry but not its offset; the patch mean keeps domains defined by intensity,
   such as the layers of an interface, which a lattice image can also have).
2. **Candidate sizes** from 4 to 32 px; without a lattice each is tried with raw patches
   (domains of different intensity or phase) and with ``"fft+mean"`` (textures that
   differ in correlation length or anisotropy have the same mean and differ only in
   their power spectra). On a lattice image no candidate holds fewer than
   `LATTICE_MIN_PERIODS` periods of a 2-D lattice or `STRIPE_MIN_PERIODS` of 1-D
   stripes (`is_two_dimensional`); when the image is too small for that, the largest
   patch that fits is the one candidate and its reason says which image size would
   do. A phase channel (PFM) without a lattice of its own means
   180 degree domains defined by the phase value: raw patches only, and a lattice
   found in another channel does not set the scale.
3. **Trials**: every candidate's inputs, on a coarse grid of at most ~1600 patches, are
   projected on their two leading principal components and split in two by k-means;
   the candidate whose split is cleanest (highest mean silhouette) wins. Too small a
   patch sees noise, too large a one mixes domains: both lower the silhouette. Among
   candidates within `SCORE_TOLERANCE` of the best the smallest patch is taken (finer
   walls).
4. **Stride**: a quarter of the patch, raised where needed so that the fit has at most
   `MAX_PATCHES` scan positions (bounded training time).
5. **Boundary weight from the noise**: the per-pixel noise (`estimate_noise`, a
   robust high-pass residual) over the signal gives an SNR; the TV prior helps on noisy scans, so
   the weight rises from `DEFAULT_BOUNDARY_WEIGHT` (SNR >= `CLEAN_SNR`) to
   `NOISY_BOUNDARY_WEIGHT` (SNR <= `NOISY_SNR`), log-linearly in between.

Settings passed by the user are kept as they are (their reason says so).
The figures behind these rules are printed by ``python benchmarks/auto_settings.py``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from ..errors import SettingsError
from ..data.channels import is_spectral
from .features import (MIN_LATTICE_PERIOD_PX, MIN_PERIODS_PER_PATCH, _combine, _patch_stack,
                       _standard_channels, _window_mean, detect_lattice_period, fft_features,
                       phase_channel_indices)

__all__ = ["AutoSettings", "choose_settings", "estimate_noise", "is_two_dimensional",
           "smallest_image_side"]

#: Candidate patch sizes (px) for images without a lattice.
FREE_PATCH_SIZES = (4, 6, 8, 12, 16, 24, 32)
#: Candidate patch sizes for a lattice image, in lattice periods.
PERIODS_PER_PATCH = (3.0, 4.0, 5.0)
#: Peak-over-ring-median ratio at which `choose_settings` takes the image for a lattice.
#: Lower than `features.LATTICE_PEAK_RATIO`: a missed lattice gets raw patches, which
#: split it by where the atoms sit, while a texture taken for a lattice only loses raw
#: patches that textures do not need.
AUTO_LATTICE_PEAK_RATIO = 8.0
#: Smallest patch for |FFT| features of a lattice (enough frequency bins).
MIN_LATTICE_PATCH = 12
#: Fewest periods (of the strongest reflection) any candidate patch may hold on a 2-D
#: lattice, and on 1-D stripes (`is_two_dimensional`). The trials alone pick patches too
#: small for their spectra to resolve a 2-D lattice's orientation; stripes need only
#: one period to show theirs, and larger patches mix their narrow domains.
LATTICE_MIN_PERIODS = 2.0
STRIPE_MIN_PERIODS = 1.0
#: `is_two_dimensional`: median power of the strongest reflection at least 30 degrees
#: away from a tile's strongest one, over that strongest one, above which the periodic
#: signal is a 2-D lattice rather than stripes.
TWO_D_POWER_RATIO = 0.55
#: A candidate patch must fit this many times along the image's shorter side.
PATCHES_PER_SIDE = 4
#: Most scan positions a trial clusters (trials are cheap, whatever the image size).
TRIAL_CELLS = 1600
#: Most scan positions of the fit itself (bounds its time on big images).
MAX_PATCHES = 4096
#: Candidates within this much of the best silhouette count as tied; the smallest wins.
SCORE_TOLERANCE = 0.02
#: Weight of the TV boundary loss on clean scans (`noise_aware_weight` raises it for noisy
#: ones). With ``boundary_scale="kl"`` it is dimensionless: a wall density of one grid
#: step of wall (a jump of one prior std) per grid point costs this fraction of the
#: information (KL, nats per patch) the content latents carry (``losses.boundary_price``).
#: On clean lattice phantoms the walls are already at the grid's resolution without the
#: prior, so the weight barely matters; on noisy or small images it gives shorter walls
#: and stabler maps (``python benchmarks/auto_settings.py --noise``).
DEFAULT_BOUNDARY_WEIGHT = 3.0
NOISY_BOUNDARY_WEIGHT = 10.0
CLEAN_SNR, NOISY_SNR = 3.0, 1.0
DEFAULT_LATENT_DIM = 2


@dataclass
class AutoSettings:
    """The settings `choose_settings` picked, each with the reason for it.

    Attributes
    ----------
    patch_size, stride : int
        Patch side and step between patch centres, in pixels.
    transform : str
        Input transform (``features.TRANSFORMS``).
    latent_dim : int
        Number of content latents.
    boundary_weight : float
        Weight of the TV boundary loss (KL units, see ``losses.boundary_price``).
    lattice_period_px : float
        Period of the strongest lattice reflection (0: no lattice).
    noise_sigma : float
        Per-pixel noise of the z-scored image (``estimate_noise``).
    snr : float
        Estimated per-pixel signal-to-noise ratio.
    reasons : dict
        ``{setting: one-line reason}`` for each setting above.
    scores : dict
        ``{"<transform>@<patch>": silhouette}`` of the trials (empty when none ran).
    elapsed_s : float
        Time the choice took.
    """

    patch_size: int
    stride: int
    transform: str
    latent_dim: int
    boundary_weight: float
    lattice_period_px: float = 0.0
    noise_sigma: float = 0.0
    snr: float = 0.0
    reasons: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    elapsed_s: float = 0.0

    SETTINGS = ("patch_size", "stride", "transform", "latent_dim", "boundary_weight")

    def fit_kwargs(self) -> dict:
        """The chosen settings as keyword arguments of ``fit``."""
        return {k: getattr(self, k) for k in self.SETTINGS}

    def reason_list(self) -> list[str]:
        """One line per setting, ``"patch_size 24: ..."`` (what the dashboard shows)."""
        return [f"{k} {getattr(self, k)}: {self.reasons.get(k, '')}" for k in self.SETTINGS]

    def as_attrs(self) -> dict:
        """NetCDF-safe attributes: ``auto_reasons`` (list) and the measured quantities."""
        return {"auto_reasons": self.reason_list(),
                "auto_lattice_period_px": float(self.lattice_period_px),
                "auto_noise_sigma": float(self.noise_sigma),
                "auto_snr": float(self.snr),
                "auto_trials": ", ".join(f"{k}={v:.3f}" for k, v in self.scores.items()),
                "auto_elapsed_s": float(self.elapsed_s)}

    def to_dict(self) -> dict:
        """Every field as a plain dict."""
        return asdict(self)


def _diffraction_settings(patch_size, stride, transform, latent_dim, boundary_weight,
                          t0: float) -> AutoSettings:
    """4D-STEM: each scan position's own pattern is the input (`features_4d` chooses the
    pattern transform); the scan grid needs no patch to see a domain."""
    user = "set by the user"
    chosen = {
        "patch_size": (1, "4D-STEM: the diffraction pattern at each scan position"),
        "stride": (1, "4D-STEM: every scan position"),
        "transform": ("auto", "4D-STEM: chosen from the patterns by features_4d"),
        "latent_dim": (DEFAULT_LATENT_DIM, "two latents hold two to four phases or orientations"),
        "boundary_weight": (DEFAULT_BOUNDARY_WEIGHT, "4D-STEM: the default weight"),
    }
    given = {"patch_size": patch_size, "stride": stride, "transform": transform,
             "latent_dim": latent_dim, "boundary_weight": boundary_weight}
    values, reasons = {}, {}
    for name, (value, why) in chosen.items():
        keep = given[name] not in (None, "auto")
        values[name], reasons[name] = (given[name], user) if keep else (value, why)
    return AutoSettings(**values, reasons=reasons, elapsed_s=time.perf_counter() - t0)


def smallest_image_side() -> int:
    """Shortest image side (px) for which some candidate patch size fits."""
    return PATCHES_PER_SIDE * min(FREE_PATCH_SIZES)


def estimate_noise(image: xr.DataArray) -> tuple[float, float]:
    """Per-pixel noise of the z-scored image and the SNR it implies: ``(sigma, snr)``.

    Each channel (phase channels as cos/sin) is z-scored and filtered with
    Immerkaer's (1996) kernel, a difference of Laplacians that cancels any signal
    that is locally linear; the robust (median absolute deviation) scale of the
    residual over the kernel's norm (6) is the per-pixel noise. Channels are combined
    by taking the least noisy, since one clean channel is enough to find the domains.
    The SNR is the signal's std (the rest of the unit variance) over the noise.
    Structure finer than about 3 px (an atomic lattice at 3 px period) counts partly
    as noise.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> clean = np.repeat([0.0, 1.0], 64)[None, :].repeat(128, 0)
    >>> sigma, snr = estimate_noise(xr.DataArray(clean + 0.5 * rng.normal(size=clean.shape),
    ...                                          dims=("y", "x")))
    >>> round(snr, 1)
    1.0
    """
    from scipy.ndimage import convolve
    from scipy.stats import median_abs_deviation

    if is_spectral(image):
        a = np.asarray(image.data, dtype=float)
        a = (a - a.mean(axis=(0, 1))) / (a.std(axis=(0, 1)) + 1e-12)
    else:
        a, _ = _standard_channels(image, "zscore")
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    sigmas = []
    for c in range(a.shape[-1]):
        residual = convolve(a[..., c], kernel, mode="reflect")[1:-1, 1:-1]
        sigmas.append(float(median_abs_deviation(residual, axis=None, scale="normal")) / 6.0)
    sigma = float(np.clip(min(sigmas), 0.0, 0.999))
    snr = math.sqrt(max(1.0 - sigma**2, 1e-6)) / max(sigma, 1e-6)
    return sigma, float(snr)


def noise_aware_weight(snr: float) -> float:
    """Boundary weight for an estimated per-pixel SNR (see the module docstring).

    Examples
    --------
    >>> noise_aware_weight(10.0), noise_aware_weight(0.5)
    (3.0, 10.0)
    """
    if snr >= CLEAN_SNR:
        return DEFAULT_BOUNDARY_WEIGHT
    if snr <= NOISY_SNR:
        return NOISY_BOUNDARY_WEIGHT
    t = math.log(CLEAN_SNR / snr) / math.log(CLEAN_SNR / NOISY_SNR)
    return float(round(DEFAULT_BOUNDARY_WEIGHT
                       * (NOISY_BOUNDARY_WEIGHT / DEFAULT_BOUNDARY_WEIGHT) ** t, 2))


def is_two_dimensional(image: xr.DataArray, period: float) -> bool:
    """Whether a periodic image is a 2-D lattice (not 1-D stripes), judged on small tiles.

    Each tile (about 2.5 periods, at least 32 px, half overlapping) is Hann-windowed;
    in its power spectrum, over periods from 3 px to 1.7 ``period``, the strongest peak
    at least 30 degrees away from the strongest one is compared with it. A 2-D lattice has
    reflections of similar power in two or more directions; stripes have one direction
    per tile, even where domains of two stripe orientations make the whole image's
    spectrum look 2-D. The median ratio over tiles is compared with `TWO_D_POWER_RATIO`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[:96, :96]
    >>> stripes = xr.DataArray(np.cos(2 * np.pi * xx / 7.3), dims=("y", "x"))
    >>> square = xr.DataArray(np.cos(2 * np.pi * xx / 7.3) + np.cos(2 * np.pi * yy / 7.3),
    ...                       dims=("y", "x"))
    >>> is_two_dimensional(stripes, 7.3), is_two_dimensional(square, 7.3)
    (False, True)
    """
    a, _ = _standard_channels(image, "zscore")
    ny, nx, c = a.shape
    t = int(min(ny, nx, max(32, math.ceil(2.5 * period))))
    tiles = np.lib.stride_tricks.sliding_window_view(a, (t, t), axis=(0, 1))
    tiles = tiles[::max(1, t // 2), ::max(1, t // 2)].reshape(-1, c, t, t)
    tiles = tiles - tiles.mean(axis=(2, 3), keepdims=True)
    window = np.hanning(t + 2)[1:-1]
    power = (np.abs(np.fft.fft2(tiles * np.outer(window, window), axes=(2, 3))) ** 2).sum(1)
    power = np.fft.fftshift(power, axes=(1, 2)).reshape(len(tiles), -1)
    k1 = (np.arange(t) - t // 2) / t
    ky, kx = np.meshgrid(k1, k1, indexing="ij")
    k = np.hypot(ky, kx)
    # One half-plane: the spectrum of a real image is symmetric.
    band = ((k >= 0.6 / period) & (k <= 1.0 / MIN_LATTICE_PERIOD_PX) & (ky >= 0)).ravel()
    power = np.where(band, power, 0.0)
    angle = np.degrees(np.arctan2(ky, kx)).ravel() % 180.0
    strongest = power.argmax(axis=1)
    apart = np.abs((angle[None, :] - angle[strongest][:, None] + 90.0) % 180.0 - 90.0)
    other = np.where(apart > 30.0, power, 0.0).max(axis=1)
    ratio = other / np.maximum(power.max(axis=1), 1e-30)
    return bool(np.median(ratio) >= TWO_D_POWER_RATIO)


def _trial_score(image: xr.DataArray, standard: np.ndarray, patch_size: int, transform: str,
                 seed: int) -> float:
    """Silhouette of a 2-way k-means split of the inputs' two leading PCA scores.

    ``standard`` is the image as `features._standard_channels` gives it (computed once
    for all trials); the inputs are those of ``prepare_inputs`` with its defaults.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    ny, nx = image.sizes["y"], image.sizes["x"]
    cells = (ny - patch_size + 1) * (nx - patch_size + 1)
    stride = max(1, math.ceil(math.sqrt(cells / TRIAL_CELLS)))
    patches, _, _ = _patch_stack(standard, image, patch_size, stride)
    if transform == "patch":
        data = np.asarray(patches)
    else:
        data = _combine(fft_features(patches), _window_mean(patches), 0.25, "balanced")
    data = data.reshape(data.shape[0] * data.shape[1], -1).astype(np.float64)
    data -= data.mean(axis=0)
    if len(data) < 8:
        return -1.0
    from sklearn.utils.extmath import randomized_svd

    _, _, vt = randomized_svd(data, 2, random_state=seed)
    scores = data @ vt.T
    if not np.isfinite(scores).all() or scores.std() == 0:
        return -1.0
    labels = KMeans(2, n_init=3, random_state=seed).fit_predict(scores)
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(scores, labels, sample_size=min(len(scores), 1000),
                                  random_state=seed))


def _candidates(image, period, transform, min_periods=None):
    """``[(patch_size, transform, why)]`` to try, smallest patch first.

    On a lattice image (``period`` in px) no candidate holds fewer than ``min_periods``
    periods (default `LATTICE_MIN_PERIODS`) unless the image is too small for any such
    patch; then the largest patch that fits is the one candidate, and its reason says so.
    """
    if min_periods is None:
        min_periods = (LATTICE_MIN_PERIODS if period and is_two_dimensional(image, period)
                       else STRIPE_MIN_PERIODS)
    side = min(image.sizes["y"], image.sizes["x"])
    largest = side // PATCHES_PER_SIDE
    lattice_transform = "fft+mean" if transform == "auto" else transform
    out = []
    floor_px, why_free = 0, None
    if period:
        floor_px = math.ceil(min_periods * period)
        for n in PERIODS_PER_PATCH:
            p = int(max(MIN_LATTICE_PATCH, 2 * round(n * period / 2)))
            if p <= largest and all(p != c[0] for c in out):
                out.append((p, lattice_transform,
                            f"lattice period {period:.1f} px, {p / period:.1f} periods"))
        if floor_px > largest:
            # A long period in a small image: the largest patch that fits is the best
            # chance, if it holds enough periods for |FFT| features at all.
            needed = PATCHES_PER_SIDE * max(floor_px, MIN_LATTICE_PATCH)
            fallback = 2 * (largest // 2)
            too_small = (f"the image is too small for {min_periods:g} periods per patch, "
                         f"which need an image side of {needed} px")
            if fallback >= MIN_PERIODS_PER_PATCH * period:
                return [(fallback, lattice_transform,
                         f"lattice period {period:.1f} px, {fallback / period:.1f} periods "
                         f"(the largest patch that fits; {too_small})")]
            out, floor_px = [], 0
            why_free = f"lattice period {period:.1f} px, but {too_small}"
    # The free sizes are tried on a lattice image too: a periodic signal need not be
    # what tells the domains apart (a scan artefact in the amplitude of a PFM scan, none
    # in its phase; intensity steps between stripe variants), and the trials decide.
    # Only with |FFT| + mean inputs, though: raw patches of a lattice split cleanly by
    # where the atoms sit in them, which is no domain at all. Nor below `min_periods`
    # periods: the trials' silhouette favours small patches, whose spectra do not
    # resolve the lattice.
    free_transforms = ("patch", "fft+mean") if not period else ("fft+mean",)
    for p in FREE_PATCH_SIZES:
        if p > largest or p < floor_px:
            continue
        for t in (free_transforms if transform == "auto" else (transform,)):
            if t == "fft+mean" and p < 8:
                continue  # too few frequencies for a spectrum
            if all((p, t) != c[:2] for c in out):
                out.append((p, t, why_free))
    return sorted(out, key=lambda c: c[0])


def choose_settings(image: xr.DataArray, *, patch_size="auto", stride="auto",
                    transform="auto", latent_dim=None, boundary_weight=None,
                    seed: int = 0) -> AutoSettings:
    """Choose fit settings from the image alone (no labels, no presets).

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)``, ``(y, x, channel)`` or ``(y, x, spectral)``.
    patch_size, stride : int or "auto"
        Given values are kept; ``"auto"`` (or None) chooses them.
    transform : str
        ``"auto"`` chooses; anything else is kept.
    latent_dim : int, optional
        None chooses.
    boundary_weight : float, optional
        None chooses from the estimated noise.
    seed : int
        Seed of the trials' k-means.

    Returns
    -------
    AutoSettings
        The settings and a one-line reason for each.

    Raises
    ------
    SettingsError
        When the image is too small for any candidate patch size, or holds NaN/Inf.

    Examples
    --------
    >>> import phyvae_dash as pvd
    >>> ds = pvd.synthetic.make("patch_stripes", shape=(128, 128), seed=0)
    >>> choice = choose_settings(ds.image)
    >>> choice.transform, choice.patch_size >= 2 * ds.attrs["period_px"]
    ('fft+mean', True)
    >>> choice.reason_list()[0]  # doctest: +ELLIPSIS
    'patch_size ...: lattice period 1...'
    """
    t0 = time.perf_counter()
    if image.ndim == 4:
        return _diffraction_settings(patch_size, stride, transform, latent_dim, boundary_weight, t0)
    if not np.all(np.isfinite(np.asarray(image.data, dtype=float))):
        raise SettingsError("the image contains NaN or Inf; fill them first (load(..., fill_nan=...))")
    if patch_size is None:
        patch_size = "auto"
    if stride is None:
        stride = "auto"
    ny, nx = image.sizes["y"], image.sizes["x"]
    reasons: dict[str, str] = {}
    scores: dict[str, float] = {}
    spectral = is_spectral(image)
    period = None if spectral else detect_lattice_period(
        image, threshold=AUTO_LATTICE_PEAK_RATIO)
    phase_domains = False
    phases = {} if spectral else phase_channel_indices(image)
    if phases:
        # Phase channels (PFM) define 180 degree domains by their value. When the phase
        # itself shows no lattice, a periodic signal elsewhere (scan artefacts in the
        # amplitude) does not set the scale, and raw patches (cos/sin) are the input.
        index = sorted(phases)
        phase_only = image  # a single-channel phase image
        if image.ndim == 3:
            phase_only = image.isel({image.dims[2]: index})
            units = image.attrs.get("channel_units")
            if isinstance(units, (list, tuple)) and len(units) == image.sizes[image.dims[2]]:
                phase_only.attrs["channel_units"] = [units[i] for i in index]
        if detect_lattice_period(phase_only) is None:
            period, phase_domains = None, True

    if patch_size == "auto":
        if min(ny, nx) < smallest_image_side():
            raise SettingsError(
                f"the image ({ny} x {nx} px) is too small for automatic settings: the "
                f"smallest candidate patch ({min(FREE_PATCH_SIZES)} px) must fit "
                f"{PATCHES_PER_SIDE} times per side, so use an image of at least "
                f"{smallest_image_side()} x {smallest_image_side()} px, or pass patch_size")
        if spectral:
            patch_size = 3
            reasons["patch_size"] = "spectral data: the spectra of a 3 x 3 neighbourhood"
            if transform == "auto":
                transform = "spectrum"
                reasons["transform"] = "spectral data: the spectrum at each position"
        else:
            candidates = _candidates(image, period,
                                     "patch" if phase_domains and transform == "auto" else transform)
            if not candidates:
                ny, nx = image.sizes["y"], image.sizes["x"]
                raise SettingsError(
                    f"no patch size fits transform {transform!r} on this {ny} x {nx} image "
                    f"(it needs {PATCHES_PER_SIDE} patches along the shorter side); use a larger "
                    "image, transform='patch', or give patch_size")
            standard, _ = _standard_channels(image, "zscore")
            with threadpool_limits(limits=1):
                for p, t, _ in candidates:
                    scores[f"{t}@{p}"] = _trial_score(image, standard, p, t, seed)
            best = max(scores.values())
            chosen = next(c for c in candidates
                          if scores[f"{c[1]}@{c[0]}"] >= best - SCORE_TOLERANCE)
            patch_size, chosen_transform, why = chosen
            score = scores[f"{chosen_transform}@{patch_size}"]
            tried = ", ".join(sorted({str(c[0]) for c in candidates}, key=int))
            if why is None:
                why = (f"lattice period {period:.1f} px, {patch_size / period:.1f} periods"
                       if period else "no lattice")
            lead = why + "; "
            reasons["patch_size"] = (f"{lead}cleanest 2-way split of the inputs among patches "
                                     f"{tried} px (silhouette {score:.2f})")
            if transform == "auto":
                transform = chosen_transform
                if period:
                    reasons["transform"] = (f"lattice (period {period:.1f} px): |FFT| sees "
                                            "the lattice, the patch mean sees intensity domains")
                elif phase_domains:
                    reasons["transform"] = ("phase channel without a lattice: domains are "
                                            "phase levels, raw patches (phase as cos/sin)")
                elif transform == "fft+mean":
                    reasons["transform"] = ("no lattice; |FFT| + mean split the image more "
                                            "cleanly than raw patches (texture domains)")
                else:
                    reasons["transform"] = ("no lattice; raw patches split the image more "
                                            "cleanly than |FFT| (intensity domains)")
    else:
        reasons["patch_size"] = "set by the user"
    smallest = 1 if spectral else 2  # a spectrum is an input on its own
    if not (isinstance(patch_size, (int, np.integer)) and patch_size >= smallest):
        raise SettingsError(f"patch_size must be an integer >= {smallest} or 'auto', "
                            f"got {patch_size!r}")
    patch_size = int(patch_size)

    if transform == "auto":
        # The user fixed the patch: resolve the transform as prepare_inputs would.
        from .features import choose_transform

        transform, why, _ = choose_transform(image, patch_size)
        reasons["transform"] = why
    elif "transform" not in reasons:
        reasons["transform"] = "set by the user"

    if stride == "auto":
        stride = max(1, round(patch_size / 4))
        cells = (ny - patch_size + 1) * (nx - patch_size + 1)
        least = math.ceil(math.sqrt(cells / MAX_PATCHES))
        if least > stride:
            stride = least
            reasons["stride"] = (f"a quarter of the patch, raised to keep at most "
                                 f"{MAX_PATCHES} scan positions")
        else:
            reasons["stride"] = "a quarter of the patch: neighbouring patches overlap by 3/4"
    else:
        reasons["stride"] = "set by the user"
    stride = int(stride)

    if latent_dim is None:
        latent_dim = DEFAULT_LATENT_DIM
        reasons["latent_dim"] = ("two latents hold two to four domains on their maps; "
                                 "segment(n_domains=None) counts them")
    else:
        reasons["latent_dim"] = "set by the user"

    sigma, snr = estimate_noise(image)
    if boundary_weight is None:
        boundary_weight = noise_aware_weight(snr)
        reasons["boundary_weight"] = (f"estimated per-pixel SNR {snr:.1f} (noise {sigma:.2f} "
                                      "of the image std): " + (
                                          "clean, the default weight" if snr >= CLEAN_SNR else
                                          "noisy, a stronger wall prior"))
    else:
        reasons["boundary_weight"] = "set by the user"

    return AutoSettings(patch_size=patch_size, stride=stride, transform=str(transform),
                        latent_dim=int(latent_dim), boundary_weight=float(boundary_weight),
                        lattice_period_px=float(period or 0.0), noise_sigma=sigma, snr=snr,
                        reasons=reasons, scores=scores,
                        elapsed_s=time.perf_counter() - t0)
