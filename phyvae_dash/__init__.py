"""phyvae-dash: phases, ferroic domains and domain walls in microscopy images, unsupervised.

A variational autoencoder is trained on patches cut around a grid of scan positions;
its latent variables drawn on the scan grid are *latent maps*. A differentiable
boundary loss (total variation of the latent maps, i.e. the integrated length of
their level-set boundaries) makes those maps clean domains with short walls.

Examples
--------
>>> import phyvae_dash as pvd
>>> phantom = pvd.synthetic.pfm_labyrinth(shape=(64, 64), seed=0)
>>> result = pvd.fit(phantom.image, patch_size=8, stride=4, epochs=2)
>>> labels = pvd.segment(result, n_domains=2)
>>> labels.dims
('y', 'x')
"""
from importlib import import_module

__version__ = "0.1.0"

# Heavy dependencies (torch, Panel) are imported on first use, so that
# `import phyvae_dash` and the CLI start fast.
_LAZY = {
    "load": "phyvae_dash.data.io",
    "extract_patches": "phyvae_dash.data.patches",
    "normalize": "phyvae_dash.data.patches",
    "fit": "phyvae_dash.models.train",
    "FitConfig": "phyvae_dash.models.config",
    "choose_settings": "phyvae_dash.models.auto",
    "open_result": "phyvae_dash.models.persist",
    "encode_many": "phyvae_dash.models.batch",
    "segment": "phyvae_dash.analysis.segment",
    "boundary_map": "phyvae_dash.analysis.segment",
    "boundary_length": "phyvae_dash.analysis.segment",
    "pca_baseline": "phyvae_dash.analysis.baselines",
    "Dashboard": "phyvae_dash.app.app",
}
_SUBMODULES = {
    "synthetic": "phyvae_dash.data.synthetic",
    "datasets": "phyvae_dash.data.datasets",
    "preprocess": "phyvae_dash.data.preprocess",
    "metrics": "phyvae_dash.analysis.metrics",
    "models": "phyvae_dash.models",
    "errors": "phyvae_dash.errors",
}

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'phyvae_dash' has no attribute {name!r}")


def __dir__():
    return __all__
