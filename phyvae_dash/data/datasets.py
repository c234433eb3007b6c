"""Named datasets: synthetic phantoms with ground truth, and public real microscopy files.

Real files are downloaded on first use from their public origin with
`pooch <https://www.fatiando.org/pooch/>`_, checked against a SHA-256 checksum and kept
in a cache folder: ``$PHYVAE_DASH_DATA`` when that is set, else the user cache
(``pooch.os_cache("phyvae-dash")``). Files sit in the cache under the same relative
paths as in the project's shared test-data folder (``pfm/PZT_final0001.h5``, ...), so
pointing ``PHYVAE_DASH_DATA`` at a copy of that folder makes every download a no-op.

>>> from phyvae_dash.data import datasets
>>> "pfm_labyrinth" in datasets.list_datasets()
True
>>> datasets.load_dataset("pfm_labyrinth", shape=(64, 64), seed=1).image.dims
('y', 'x', 'channel')
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, SettingsError

__all__ = ["list_datasets", "describe", "load_dataset", "fetch", "cache_dir", "ENV_VAR"]

ENV_VAR = "PHYVAE_DASH_DATA"

_DTMICROSCOPE = "https://raw.githubusercontent.com/pycroscopy/DTMicroscope/main/data/AFM"
# SingFreqPFM_0003.h5 was removed from pycroscopy in 2022: pin a commit that has it.
_PYCROSCOPY_OLD = ("https://raw.githubusercontent.com/pycroscopy/pycroscopy/"
                   "7075aa48a015a2780f979ad79fe1a4de537117ca")
_PYCROSCOPY = ("https://raw.githubusercontent.com/pycroscopy/pycroscopy/"
               "5103c31942fc03c8141f27f482876696c6bfc761")
_SCILINK = "https://raw.githubusercontent.com/ziatdinovmax/SciLink"
_RSCIIO = "https://raw.githubusercontent.com/hyperspy/rosettasciio/main/rsciio/tests/data/tiff"


@dataclass(frozen=True)
class _File:
    path: str  # relative to the cache folder; the shared test-data layout
    url: str
    sha256: str | None  # None: the origin publishes no checksum we could verify


@dataclass(frozen=True)
class _Real:
    name: str
    description: str
    files: tuple  # of _File; the first is the one to load, the others its sidecars
    origin: str
    licence: str
    channel: tuple | None = None  # sensible default channels for a model
    loadable: bool = True
    reason_not_loadable: str = ""
    size: str = ""


@dataclass(frozen=True)
class _Phantom:
    name: str
    description: str
    options: dict = field(default_factory=dict)


_PHANTOMS = {p.name: p for p in (
    _Phantom("graphene_grains", "Synthetic graphene-like honeycomb lattice with grains "
             "rotated against each other by arbitrary angles; labels are the grains."),
    _Phantom("bfo_stripes", "Synthetic BiFeO3-like stripe domains, four variants in two "
             "stripe orientations; labels are the orientation domains, "
             "variant_labels the stripes."),
    _Phantom("nio_lsmo", "Synthetic NiO-LSMO-like two-phase lattice: rock-salt pillars "
             "in a perovskite matrix; labels are the phases."),
    _Phantom("pfm_labyrinth", "Synthetic PFM-like 180 degree labyrinth domains with "
             "amplitude (dark walls) and phase channels; labels are up/down."),
    _Phantom("diffraction_grains", "Synthetic 4D-STEM: grains of two phases at several "
             "orientations, a diffraction pattern per scan position; labels are the grains."),
    _Phantom("eels_phases", "Synthetic EELS spectrum image: three chemical phases on a "
             "power-law background; labels are the phases."),
)}

_REAL = {r.name: r for r in (
    _Real(
        "pzt_pfm",
        "Real PFM of a PZT film, 2 µm scan, 8 channels of 256 x 256 (height, amplitude, "
        "phase, deflection, nap channels). Herringbone ferroelastic stripe domains in "
        "amplitude; switched 180 degree domains in phase. NSID HDF5.",
        (_File("pfm/PZT_final0001.h5", f"{_DTMICROSCOPE}/PZT_final0001.h5",
               "3a85c4852f046bb514e75ce0f890775260a01c5f518231d6b1c30e9c28dd5ba0"),),
        "github.com/pycroscopy/DTMicroscope data/AFM/PZT_final0001.h5", "MIT",
        channel=("AmplitudeRetrace", "PhaseRetrace"), size="2.6 MB",
    ),
    _Real(
        "pto_pfm",
        "Real PFM of PbTiO3 (Funakubo group), 4 channels of 256 x 256 (height, "
        "amplitude, deflection, phase). Cross-hatch a/c domain texture; switched "
        "domains in phase. NSID HDF5.",
        (_File("pfm/PTO_Funakubo0002.h5", f"{_DTMICROSCOPE}/PTO_Funakubo0002.h5",
               "28a20ef58731c1b7e010d62466b9f3f1159256b2d8bd70b0fdf24294c0b016bd"),),
        "github.com/pycroscopy/DTMicroscope data/AFM/PTO_Funakubo0002.h5", "MIT",
        channel=("AmplitudeRetrace", "PhaseRetrace"), size="1.3 MB",
    ),
    _Real(
        "singfreq_pfm",
        "Real single-frequency PFM, 5 µm scan, 4 channels of 128 x 128 (height, "
        "amplitude, deflection, phase). The phase is cleanly two-level with sharp "
        "walls. USID HDF5.",
        (_File("pfm/SingFreqPFM_0003.h5", f"{_PYCROSCOPY_OLD}/data/SingFreqPFM_0003.h5",
               "18718e7045b5b64d645666d5d2bbd6c8f811590cde507bf2dfb7f7387f811d18"),),
        "github.com/pycroscopy/pycroscopy data/SingFreqPFM_0003.h5 (history, removed 2022)",
        "MIT", channel=("AmplitudeRetrace", "PhaseRetrace"), size="1.6 MB",
    ),
    _Real(
        "bfo_iv",
        "Real current-voltage spectroscopy map of BiFeO3: 50 x 50 positions x 53 points "
        "(log current vs sqrt(E)); the conducting domain-wall network is visible. A "
        "spectrum per scan position. NSID HDF5.",
        (_File("spectral/bfo_iv_final.hf5", f"{_PYCROSCOPY}/sample_data/bfo_iv_final.hf5",
               "0d833677015276895a19ebc9ea35fc4b16f8f091bb3a8b817e54b51d5c0fdd43"),),
        "github.com/pycroscopy/pycroscopy sample_data/bfo_iv_final.hf5", "MIT",
        size="1.1 MB",
    ),
    _Real(
        "mos2_stem",
        "Real HAADF-STEM of a V-doped MoS2 monolayer at 60 kV, 512 x 512, 7 nm field "
        "of view (from the JSON sidecar). Lattice with vacancies/dopants and brighter "
        "patchy regions.",
        (_File("stem/MoS2_stem_Exp-001-5.npy",
               f"{_SCILINK}/4087378661eb6b358537c8210593fe3cbe9423c2/examples/data/"
               "MoS2_stem_Exp-001-5.npy",
               "74dd13de10282aa8f8a8cea84ab3a3b653fadeabc4b63ea6845afd90d9c049fb"),
         _File("stem/MoS2_stem_Exp-001-5.json",
               f"{_SCILINK}/cc10e5202969b8d6e0c3daf834a81565ab09ae23/examples/data/"
               "MoS2_stem_Exp-001-5.json",
               "8e80a805fa5442a81deaa10b3c5e16a930849507127c66822a8237fca5654076")),
        "github.com/ziatdinovmax/SciLink examples/data/MoS2_stem_Exp-001-5.npy + .json",
        "MIT", size="2.1 MB",
    ),
    _Real(
        "dm3_um_test",
        "A small Gatan DigitalMicrograph image with a µm scale (rosettasciio test "
        "fixture), for checking the DM reader and physical units.",
        (_File("formats/test_dm_image_um_unit.dm3", f"{_RSCIIO}/test_dm_image_um_unit.dm3",
               "a365d8d19ab6df41c2d8152290541ec393ad2af55228e0580cb727b1d81c80c1"),),
        "github.com/hyperspy/rosettasciio rsciio/tests/data/tiff/test_dm_image_um_unit.dm3",
        "GPL-3.0-or-later", size="0.2 MB",
    ),
    # The paper's own data on Zenodo. No checksum is published with these records, so
    # they are not verified (pooch known_hash=None); they are large.
    _Real(
        "smbfo_composition_series",
        "Sm-doped BiFeO3 HAADF-STEM composition series (Ziatdinov et al., npj Comput. "
        "Mater. 2020; DOI 10.13139/ORNLNCCS/1773704), as used by atomai.",
        (_File("zenodo/4876786/composition_series_dict_full.npy",
               "https://zenodo.org/record/4876786/files/composition_series_dict_full.npy",
               None),),
        "zenodo.org/record/4876786", "see the Zenodo record", size="about 2 GB",
        loadable=False,
        reason_not_loadable="the file is a pickled Python dict and phyvae-dash never "
        "unpickles files (that can run arbitrary code); fetch() it and open it yourself "
        "with numpy.load(..., allow_pickle=True) if you trust the source",
    ),
    _Real(
        "graphene_stem_movies",
        "Graphene STEM image stacks (DOI 10.13139/ORNLNCCS/1773705), as used by atomai.",
        (_File("zenodo/4885132/graphene_imgstacks_dict.npy",
               "https://zenodo.org/record/4885132/files/graphene_imgstacks_dict.npy", None),),
        "zenodo.org/record/4885132", "see the Zenodo record", size="large",
        loadable=False,
        reason_not_loadable="the file is a pickled Python dict of movies and "
        "phyvae-dash never unpickles files; fetch() it and open it yourself",
    ),
    _Real(
        "smbfo_haadf_sm0",
        "Sm-doped BiFeO3 HAADF-STEM image, 0 % Sm, from the Zenodo record with the "
        "per-composition HAADF files and unit-cell parameterisations.",
        (_File("zenodo/4555979/Sm_0_0_HAADF.h5",
               "https://zenodo.org/record/4555979/files/Sm_0_0_HAADF.h5", None),),
        "zenodo.org/record/4555979", "see the Zenodo record", size="unknown",
        loadable=False,
        reason_not_loadable="its HDF5 layout has not been checked against phyvae-dash's "
        "readers; fetch() it and try phyvae_dash.load(path)",
    ),
)}


# --------------------------------------------------------------------------- public API


def list_datasets(kind: str | None = None) -> list[str]:
    """Names of the datasets :func:`load_dataset` knows.

    Parameters
    ----------
    kind : {"phantom", "real"}, optional
        Only synthetic phantoms, or only real files; default both (phantoms first).

    Examples
    --------
    >>> list_datasets("phantom")
    ['graphene_grains', 'bfo_stripes', 'nio_lsmo', 'pfm_labyrinth', 'diffraction_grains', 'eels_phases']
    """
    if kind not in (None, "phantom", "real"):
        raise SettingsError(f"kind must be 'phantom', 'real' or None, not {kind!r}")
    names = []
    if kind in (None, "phantom"):
        names += list(_PHANTOMS)
    if kind in (None, "real"):
        names += list(_REAL)
    return names


def describe(name: str) -> dict:
    """What a dataset is, where it comes from and how it loads.

    Returns
    -------
    dict
        ``name``, ``kind`` (``"phantom"`` or ``"real"``), ``description``; for real
        files also ``origin``, ``url``, ``path`` (inside the cache), ``sha256`` (None
        where the origin has no verified checksum), ``licence``, ``size``,
        ``default_channel``, ``loadable`` and ``cached`` (already in the cache folder).

    Examples
    --------
    >>> info = describe("pzt_pfm")
    >>> info["kind"], info["path"], info["default_channel"]
    ('real', 'pfm/PZT_final0001.h5', ['AmplitudeRetrace', 'PhaseRetrace'])
    """
    if name in _PHANTOMS:
        return {"name": name, "kind": "phantom", "description": _PHANTOMS[name].description}
    entry = _entry(name)
    main = entry.files[0]
    return {
        "name": name, "kind": "real", "description": entry.description,
        "origin": entry.origin, "url": main.url, "path": main.path, "sha256": main.sha256,
        "licence": entry.licence, "size": entry.size,
        "default_channel": list(entry.channel) if entry.channel else None,
        "loadable": entry.loadable,
        "cached": all((cache_dir() / f.path).exists() for f in entry.files),
    }


def load_dataset(name: str, **kwargs):
    """Build a phantom or load a real file by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.
    **kwargs
        For phantoms, passed to :func:`phyvae_dash.data.synthetic.make` (``shape``,
        ``seed``, ...). For real files, passed to :func:`phyvae_dash.data.io.load`:
        ``channel`` defaults to the dataset's sensible channels (see :func:`describe`);
        ``channel="all"`` keeps every channel; ``fill_nan`` and reader options as there.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        A phantom ``Dataset`` (``image``, ``labels``, ``boundaries``, ...) or the loaded
        image with ``attrs["dataset"]`` set to ``name``.

    Raises
    ------
    phyvae_dash.errors.DataError
        Unknown name, a download that fails or does not match its checksum, or a file
        that is not safe to load.

    Examples
    --------
    >>> phantom = load_dataset("nio_lsmo", shape=(64, 64), seed=0)
    >>> sorted(phantom.data_vars)[:2]
    ['boundaries', 'image']
    """
    if name in _PHANTOMS:
        from . import synthetic  # imported here: phantoms need scipy, the registry does not

        return synthetic.make(name, **kwargs)
    entry = _entry(name)
    if not entry.loadable:
        raise DataError(f"dataset {name!r} cannot be loaded directly: "
                        f"{entry.reason_not_loadable}")
    path = fetch(name)
    from .io import load

    channel = kwargs.pop("channel", None)
    if channel is None and entry.channel:
        channel = list(entry.channel)
    elif channel == "all":
        channel = None
    image = load(path, channel, **kwargs)
    image.attrs["dataset"] = name
    return image


def fetch(name: str) -> Path:
    """Path to a real dataset's file in the cache, downloading it first if needed.

    A file already in the cache with the right checksum is used without touching the
    network; sidecar files (e.g. the JSON calibration of an ``.npy``) come along.

    Examples
    --------
    >>> fetch("mos2_stem").name  # doctest: +SKIP
    'MoS2_stem_Exp-001-5.npy'
    """
    import pooch

    entry = _entry(name)
    root = cache_dir()
    paths = []
    for f in entry.files:
        target = root / f.path
        try:
            # pooch skips the download when the file exists and its hash matches.
            known_hash = f"sha256:{f.sha256}" if f.sha256 else None
            local = pooch.retrieve(f.url, known_hash=known_hash, fname=target.name,
                                   path=target.parent, progressbar=False)
        except Exception as err:  # network, HTTP, permission or checksum failures
            raise DataError(
                f"dataset {name!r}: could not get {f.path} into {root} from {f.url} "
                f"({type(err).__name__}: {err}). Download it by hand to that path, or "
                f"set {ENV_VAR} to a folder that holds it."
            ) from None
        paths.append(Path(local))
    return paths[0]


def cache_dir() -> Path:
    """The cache folder: ``$PHYVAE_DASH_DATA`` if set, else the user cache for phyvae-dash.

    Examples
    --------
    >>> import os
    >>> os.environ["PHYVAE_DASH_DATA"] = "/tmp/pvd-data"
    >>> str(cache_dir())
    '/tmp/pvd-data'
    >>> del os.environ["PHYVAE_DASH_DATA"]
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("phyvae-dash"))


def _entry(name: str) -> _Real:
    if name not in _REAL:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    return _REAL[name]
