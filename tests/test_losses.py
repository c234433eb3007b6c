"""Boundary-loss math: the value is the wall length of a step map; gradients flow."""
import numpy as np
import pytest
import torch

from phyvae_dash.models.losses import boundary_loss, reference_boundary_term


def step_map(t=8, height=1.0, at=3, vertical=True):
    z = torch.zeros(1, 1, t, t)
    if vertical:
        z[..., at:] = height
    else:
        z[..., at:, :] = height
    return z


@pytest.mark.parametrize("t", [4, 8, 16])
@pytest.mark.parametrize("vertical", [True, False])
def test_step_map_value_is_wall_length(t, vertical):
    z = step_map(t, vertical=vertical)
    assert float(boundary_loss(z, kind="anisotropic", normalize=False)) == pytest.approx(t)
    eps = 1e-3
    iso = float(boundary_loss(z, kind="tv", eps=eps, normalize=False))
    assert iso == pytest.approx(t, abs=2 * eps * t)


def test_jump_height_and_latents_add():
    z = torch.cat([step_map(8, 2.0), step_map(8, 0.5)], dim=1)
    per = boundary_loss(z, kind="anisotropic", normalize=False, reduction="none")
    assert per.tolist() == [[16.0, 4.0]]


def test_flat_map_costs_nothing():
    assert float(boundary_loss(torch.full((3, 2, 8, 8), 1.7))) == 0.0


def test_diagonal_wall_isotropic_is_shorter_than_anisotropic():
    yy, xx = np.mgrid[:16, :16]
    z = torch.tensor((xx > yy).astype(np.float32))[None, None]
    iso = float(boundary_loss(z, kind="tv", eps=1e-3, normalize=False))
    aniso = float(boundary_loss(z, kind="anisotropic", normalize=False))
    assert iso < aniso  # isotropic: a 45 deg staircase costs ~sqrt(2) per step, not 2


def test_normalised_value_is_tile_size_independent():
    # Walls every 4 grid steps: over all tile offsets the normalised loss is the wall
    # density (15 walls over 63 pixel pairs per row), at any tile size.
    z = torch.tensor((np.arange(64) // 4 % 2).astype(np.float32)).expand(64, 64)
    for t in (4, 8, 16):
        tiles = z.unfold(0, t, 1).unfold(1, t, 1).reshape(-1, 1, t, t)
        assert float(boundary_loss(tiles, kind="anisotropic")) == pytest.approx(15 / 63, rel=0.05)


def test_gradient_flows_and_shortens_walls():
    z = (step_map(8) + 0.1 * torch.randn(1, 1, 8, 8)).requires_grad_()
    loss = boundary_loss(z)
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with torch.no_grad():
        z2 = z - 0.01 * z.grad
    assert float(boundary_loss(z2)) < float(loss.detach())


def test_spread_units_cannot_be_lowered_by_shrinking_the_latents():
    # In prior units TV halves when the map is halved (no wall moved); in spread units
    # only the walls count.
    z = step_map(8, height=2.0) + 0.05 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    prior = [float(boundary_loss(c * z, scale="prior")) for c in (1.0, 0.5)]
    spread = [float(boundary_loss(c * z, scale="spread", min_spread=0.0)) for c in (1.0, 0.5)]
    assert prior[1] < 0.6 * prior[0]
    assert spread[1] == pytest.approx(spread[0], rel=1e-5)
    # The gradient of the spread form does not point towards shrinking the map.
    zz = z.clone().requires_grad_()
    boundary_loss(zz, scale="spread", min_spread=0.0).backward()
    assert abs(float((zz.grad * zz.detach()).sum())) < 1e-4  # d/dc loss(c z) at c = 1 is 0


def test_spread_units_value_of_a_clean_wall():
    # Two equal halves with a unit jump have spread 1/2: the wall costs twice its length.
    z = step_map(8, at=4)
    value = float(boundary_loss(z, kind="anisotropic", scale="spread", min_spread=0.0,
                                normalize=False))
    assert value == pytest.approx(8 / 0.5, rel=0.02)  # torch.std is the n-1 estimate


def test_spread_floor_keeps_an_unused_latent_cheap():
    noise = 1e-3 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(boundary_loss(noise, scale="spread")) < 0.01
    assert float(boundary_loss(noise, scale="spread", min_spread=0.0)) > 0.5


def test_reference_term_has_no_gradient_and_sees_edges():
    z = torch.cat([step_map(8), torch.zeros(1, 1, 8, 8)], dim=0).requires_grad_()
    term = reference_boundary_term(z)
    assert isinstance(term, np.ndarray) and term.shape == (2,)
    assert term[0] > 0 and term[1] == 0


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        boundary_loss(torch.zeros(8, 8))
    with pytest.raises(ValueError):
        boundary_loss(torch.zeros(1, 1, 8, 8), kind="l2")
    with pytest.raises(ValueError):
        boundary_loss(torch.zeros(1, 1, 8, 8), scale="unit")
