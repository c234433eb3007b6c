"""Model families: shapes, configs, pose units, and that each one learns."""
import math

import numpy as np
import pytest
import torch
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.models.rot_vae import RotVAE
from phyvae_dash.models.shift_vae import ShiftVAE
from phyvae_dash.models.registry import build_model
from phyvae_dash.models.vae import VAE

pytestmark = pytest.mark.filterwarnings("ignore:the latent maps are nearly flat")  # short test fits


@pytest.mark.parametrize("cls,shape,n_pose", [
    (VAE, (1, 8, 8), 0), (VAE, (3, 9, 9), 0), (VAE, (17,), 0),
    (ShiftVAE, (2, 8, 8), 2), (ShiftVAE, (17,), 1), (RotVAE, (1, 8, 8), 3),
])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_and_config_round_trip(cls, shape, n_pose, likelihood):
    torch.manual_seed(0)
    m = cls(shape, latent_dim=3, likelihood=likelihood)
    x = torch.rand(5, *shape)
    mu, std = m.encode(x)
    assert mu.shape == std.shape == (5, 3 + n_pose) and (std > 0).all()
    assert m.decode(mu).shape == m.decode(mu[:, :3]).shape == (5, *shape)
    terms = m.loss_terms(x)
    assert terms["reconstruction"].shape == terms["kl"].shape == (5,)
    twin = build_model(m.config)
    twin.load_state_dict(m.state_dict())
    assert torch.allclose(twin.decode(mu), m.decode(mu))
    assert m.config == twin.config and type(twin) is cls


def test_rotation_needs_patches():
    with pytest.raises(ValueError):
        RotVAE((17,), latent_dim=2)


def test_shift_latent_is_in_pixels():
    """A shift latent of 1 px / shift_prior moves the rendered patch by one pixel."""
    torch.manual_seed(0)
    m = ShiftVAE((1, 10, 10), latent_dim=2, shift_prior=3.0)
    z = torch.randn(2, 2)
    base = m.render(z, torch.zeros(2, 2))
    moved = m.render(z, torch.tensor([[0.0, 1 / 3.0]] * 2))  # dx = +1 px
    assert torch.allclose(moved[..., :-1], base[..., 1:], atol=1e-5)
    assert m.pose_units(torch.tensor([[1.0, -2.0]]))["shift"].tolist() == [[3.0, -6.0]]


@pytest.mark.parametrize("shape,activation", [
    ((1, 10, 10), "relu"), ((2, 9, 9), "tanh"), ((13,), "relu"),
])
@pytest.mark.parametrize("chunk_bytes", [1 << 12, 1 << 19])
def test_fused_shift_decoder_matches_autograd(monkeypatch, shape, activation, chunk_bytes):
    """The hand-written CPU decoder (blocks of patches) equals the autograd version:
    outputs and the gradients of every parameter, latent and shift."""
    from phyvae_dash.models import nets

    torch.manual_seed(0)
    m = ShiftVAE(shape, latent_dim=2, shift_prior=2.0, decoder_activation=activation)
    z = torch.randn(7, 2 + m.n_pose, requires_grad=True)
    target = torch.randn(7, *shape)

    def run():
        m.zero_grad()
        z.grad = None
        out = m.decoder_output(z)
        ((out - target) ** 2).sum().backward()
        return [out.detach(), z.grad.clone()] + [p.grad.clone() for p in m.decoder.parameters()]

    monkeypatch.setattr(nets, "FUSED_CHUNK_BYTES", chunk_bytes)  # 4 KiB: one patch a block
    called = []
    original = nets._ShiftedCoordMLP.forward
    monkeypatch.setattr(nets._ShiftedCoordMLP, "forward",
                        staticmethod(lambda *a: called.append(1) or original(*a)))
    fused = run()
    assert called, "the fused path was not taken"
    monkeypatch.setattr(nets, "_fusable", lambda *tensors: False)
    reference = run()
    for a, b in zip(fused, reference):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), (a - b).abs().max()
    with torch.no_grad():  # no gradients wanted: nothing kept for a backward pass
        monkeypatch.undo()
        assert torch.allclose(m.decoder_output(z), fused[0], atol=1e-5)


def test_rotation_latent_rotates_the_patch():
    torch.manual_seed(0)
    m = RotVAE((1, 9, 9), latent_dim=2, angle_prior=1.0)
    z = torch.randn(1, 2)
    with torch.no_grad():
        base = m.render(z, torch.zeros(1, 3))
        quarter = m.render(z, torch.tensor([[math.pi / 2, 0.0, 0.0]]))
    rotated = [torch.rot90(base, k, dims=(-2, -1)) for k in (1, 3)]
    assert min(float((quarter - r).abs().max()) for r in rotated) < 1e-4


def lattice(n=48, period=5.3, seed=0):
    """Two phases (left: square lattice of period p; right: stripes of period 1.3 p, one
    unit brighter on average, as a heavier phase is in HAADF), with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(float)
    left = np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    right = 1.0 + np.cos(2 * np.pi * (xx + yy) / (1.3 * period))
    img = np.where(xx < n / 2, left, right) + 0.1 * rng.normal(size=xx.shape)
    return xr.DataArray(img, dims=("y", "x"))


@pytest.mark.parametrize("model", ["vae", "shift", "rotation"])
def test_each_model_learns(model):
    r = pvd.fit(lattice(), patch_size=8, stride=4, model=model, epochs=12, device="cpu",
                transform="patch", kl_warmup=0, boundary_weight=3.0)
    loss = r.loss_total.values
    assert loss[-3:].mean() < loss[:3].mean()
    # Learning means the latent maps tell the two lattices apart, not only a lower loss.
    truth = xr.DataArray((r["x"].values >= 24).astype(int)[None, :].repeat(r.sizes["y"], 0),
                         dims=("y", "x"), coords={"y": r["y"], "x": r["x"]})
    labels = pvd.segment(r, n_domains=2)
    assert pvd.metrics.adjusted_rand_index(labels, truth) > 0.8
    if model != "vae":
        assert r["shift"].dims == ("shift_dim", "y", "x") and r.attrs["shift_prior"] > 1.0
    if model == "rotation":
        assert r["angle"].dims == ("y", "x") and r["angle"].attrs["units"] == "rad"


def test_spectral_input_gives_vector_model():
    rng = np.random.default_rng(0)
    spec = np.sin(np.linspace(0, 3, 20))[None, None, :] * np.where(np.arange(24) < 12, 1.0, 2.0)[None, :, None]
    img = xr.DataArray(spec + 0.05 * rng.normal(size=(24, 24, 20)), dims=("y", "x", "voltage"))
    r = pvd.fit(img, patch_size=3, stride=1, epochs=2, device="cpu")
    assert len(r.pvd.model.input_shape) == 1
    assert r.z_mean.sizes["y"] == 22
    s = pvd.fit(img, patch_size=3, stride=1, epochs=2, device="cpu", model="shift")
    assert s["shift"].sizes["shift_dim"] == 1
