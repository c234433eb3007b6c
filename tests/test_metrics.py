"""Segmentation quality metrics on cases with known answers."""
import numpy as np
import pytest
import xarray as xr

from phyvae_dash.analysis.metrics import (
    adjusted_rand_index, boundary_f1, boundary_length_ratio, boundary_scores, labels_on_grid,
    match_labels,
)
from phyvae_dash.errors import DataError


def _labels(values, step=1.0, origin=0.0):
    values = np.asarray(values)
    coords = {d: (d, origin + np.arange(n) * step, {"units": "px"})
              for d, n in zip(("y", "x"), values.shape)}
    return xr.DataArray(values, dims=("y", "x"), coords=coords)


def _step(n_y=12, n_x=20, at=10):
    values = np.zeros((n_y, n_x), dtype=int)
    values[:, at:] = 1
    return _labels(values)


def test_identical_labels_score_perfectly():
    truth = _step()
    renamed = truth.copy(data=1 - truth.values)  # same partition, other numbers
    assert adjusted_rand_index(renamed, truth) == 1.0
    assert boundary_f1(renamed, truth) == 1.0
    assert boundary_length_ratio(renamed, truth) == 1.0


def test_shifted_wall_within_tolerance_scores_one_beyond_lower():
    truth = _step(at=10)
    assert boundary_f1(_step(at=11), truth, tolerance=1) == 1.0
    assert boundary_f1(_step(at=9), truth, tolerance=1) == 1.0
    two_off = boundary_scores(_step(at=12), truth, tolerance=1)
    assert two_off["precision"] == 0.5 and two_off["recall"] == 0.5
    assert boundary_f1(_step(at=13), truth, tolerance=1) == 0.0
    assert boundary_f1(_step(at=13), truth, tolerance=3) == 1.0
    assert adjusted_rand_index(_step(at=13), truth) < 1.0


def test_boundary_f1_edge_cases():
    flat = _labels(np.zeros((6, 6), dtype=int))
    assert boundary_f1(flat, flat) == 1.0
    assert boundary_f1(flat, _step(6, 6, 3)) == 0.0
    assert boundary_length_ratio(_step(6, 6, 3), flat) == float("inf")


def test_ragged_walls_have_a_longer_length_ratio():
    truth = _step()
    ragged = truth.values.copy()
    ragged[::2, 9] = 1  # every other row steps one cell left
    assert boundary_length_ratio(_labels(ragged), truth) > 1.5


def test_labels_on_grid_picks_the_nearest_pixels():
    image = np.arange(20 * 30).reshape(20, 30)
    truth = _labels(image)
    # patch 5, stride 4: centres at pixels 2, 6, 10, ...
    grid = xr.Dataset(coords={"y": np.arange(2, 18, 4.0), "x": np.arange(2, 28, 4.0)})
    sampled = labels_on_grid(truth, grid)
    np.testing.assert_array_equal(sampled.values, image[2:18:4, 2:28:4])
    np.testing.assert_array_equal(sampled.x.values, grid.x.values)
    # physical coordinates: pixel size 0.5 nm, the grid in nm
    scaled = _labels(image, step=0.5)
    sampled = labels_on_grid(scaled, grid.assign_coords(y=grid.y * 0.5, x=grid.x * 0.5))
    np.testing.assert_array_equal(sampled.values, image[2:18:4, 2:28:4])
    # a phantom Dataset works directly
    sampled = labels_on_grid(xr.Dataset({"labels": truth}), grid)
    np.testing.assert_array_equal(sampled.values, image[2:18:4, 2:28:4])


def test_labels_on_grid_even_patch_centres_take_the_later_pixel():
    truth = _labels(np.arange(10)[None, :].repeat(3, axis=0))
    grid = xr.Dataset(coords={"y": [1.0], "x": [1.5, 5.5]})
    assert labels_on_grid(truth, grid).values.tolist() == [[2, 6]]


def test_labels_on_grid_rejects_other_units():
    truth = _labels(np.zeros((10, 10), dtype=int))
    grid = xr.Dataset(coords={"y": [100.0], "x": [200.0]})
    with pytest.raises(DataError, match="same units"):
        labels_on_grid(truth, grid)


def test_metrics_resample_image_resolution_truth():
    truth = np.zeros((64, 64), dtype=int)
    truth[:, 30:] = 1
    # a prediction on a stride-4 grid of patch-8 centres (3.5, 7.5, ...)
    centres = 3.5 + 4 * np.arange(15)
    pred = xr.DataArray((centres[None, :] > 30).repeat(15, axis=0).astype(int),
                        dims=("y", "x"), coords={"y": centres, "x": centres})
    assert adjusted_rand_index(pred, _labels(truth)) == 1.0
    assert boundary_f1(pred, _labels(truth)) == 1.0
    assert boundary_length_ratio(pred, _labels(truth)) == 1.0


def test_invalid_cells_are_ignored():
    truth = _step()
    pred = truth.copy(data=truth.values.copy())
    pred.values[0, :] = -1
    assert adjusted_rand_index(pred, truth) == 1.0


def test_match_labels_renumbers_domains_after_the_reference():
    rng = np.random.default_rng(0)
    reference = xr.DataArray(rng.integers(0, 4, size=(20, 20)), dims=("y", "x"))
    permutation = np.array([2, 0, 3, 1])
    labels = reference.copy(data=permutation[reference.values])
    labels.values[0, :3] = -1  # invalid cells stay invalid
    matched = match_labels(labels, reference)
    valid = labels.values >= 0
    assert (matched.values[valid] == reference.values[valid]).all()
    assert (matched.values[~valid] == -1).all()
    # More domains than the reference: the extra one takes a new number.
    extra = labels.copy(data=np.where(reference.values == 0, 4, labels.values))
    extra.values[:, 0] = permutation[0]
    out = match_labels(extra, reference).values
    assert set(np.unique(out[out >= 0])) == {0, 1, 2, 3, 4}
