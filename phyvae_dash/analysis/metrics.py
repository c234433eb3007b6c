"""Quality of a segmentation against ground truth: ARI, boundary F1, boundary length.

A segmentation lives on the patch-centre grid of a fit, a ground truth (a phantom's
``labels``) usually on the image's pixels. Every metric here first samples the truth at
the prediction's grid points (:func:`labels_on_grid`), so both are compared cell by
cell on the same grid. Negative labels mark invalid cells and are left out.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import DataError
from .segment import _as_labels, boundary_length, boundary_map


def _coord(array: xr.DataArray, dim: str) -> np.ndarray:
    """Physical positions along ``dim``; pixel indices when there is no coordinate."""
    if dim in array.coords:
        return np.asarray(array[dim].values, dtype=float)
    return np.arange(array.sizes[dim], dtype=float)


def labels_on_grid(truth, grid) -> xr.DataArray:
    """Sample a ground-truth label image at the grid points of a result (nearest pixel).

    Parameters
    ----------
    truth : xarray.DataArray or xarray.Dataset
        Integer labels ``("y", "x")`` at image resolution, or a phantom Dataset with a
        ``labels`` variable.
    grid : xarray.Dataset or xarray.DataArray
        Anything with ``y``/``x`` coordinates on the grid to sample at: a fit result,
        a label map from :func:`~phyvae_dash.analysis.segment.segment`, ...
        Coordinates are in the same units as the truth's (pixel indices where either
        has none).

    Returns
    -------
    xarray.DataArray
        The truth's label at the pixel nearest to each grid point, with the grid's
        dims ``("y", "x")`` and coordinates. For an even patch size a patch centre
        lies halfway between two pixels; the later pixel is taken.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.arange(36).reshape(6, 6), dims=("y", "x"),
    ...                      coords={"y": np.arange(6.0), "x": np.arange(6.0)})
    >>> grid = xr.Dataset(coords={"y": [1.0, 4.0], "x": [1.0, 3.0, 5.0]})
    >>> labels_on_grid(truth, grid).values
    array([[ 7,  9, 11],
           [25, 27, 29]])
    """
    truth = _as_labels(truth)
    if not ({"y", "x"} <= set(grid.dims)):
        raise DataError(f"the grid to sample at needs dims 'y' and 'x', got {tuple(grid.dims)}")
    index = {}
    for dim in ("y", "x"):
        source, target = _coord(truth, dim), _coord(grid, dim)
        span = np.abs(np.diff(source)).max() if len(source) > 1 else 1.0
        low, high = source.min() - span, source.max() + span
        if target.min() < low or target.max() > high:
            raise DataError(
                f"grid {dim} positions [{target.min():g}, {target.max():g}] lie outside the "
                f"ground truth's [{source.min():g}, {source.max():g}]: are both in the same "
                f"units?"
            )
        # nearest pixel via the pandas index (handles descending coordinates too)
        positions = truth.indexes[dim] if dim in truth.indexes else None
        if positions is not None:
            index[dim] = positions.get_indexer(target, method="nearest")
        else:
            index[dim] = np.clip(np.rint(target).astype(int), 0, truth.sizes[dim] - 1)
    values = np.asarray(truth.values)[np.ix_(index["y"], index["x"])]
    coords = {dim: grid[dim] for dim in ("y", "x") if dim in grid.coords}
    return xr.DataArray(
        values, dims=("y", "x"), coords=coords, name="labels",
        attrs={**truth.attrs, "sampled_at": "grid points (nearest pixel)"},
    )


def _same_grid(pred: xr.DataArray, truth: xr.DataArray) -> bool:
    if pred.shape != truth.shape:
        return False
    return all(np.allclose(_coord(pred, d), _coord(truth, d)) for d in ("y", "x"))


def _paired(pred, truth):
    """Prediction and truth as label maps on the prediction's grid."""
    pred = _as_labels(pred)
    truth = _as_labels(truth)
    if not _same_grid(pred, truth):
        truth = labels_on_grid(truth, pred)
    return pred, truth


def adjusted_rand_index(pred, truth) -> float:
    """Adjusted Rand index between a segmentation and the ground truth.

    1 for the same partition (whatever the label numbers), about 0 for a random one.

    Parameters
    ----------
    pred : xarray.DataArray
        Integer labels ``("y", "x")``.
    truth : xarray.DataArray or xarray.Dataset
        Ground-truth labels; sampled at ``pred``'s grid points first when the grids
        differ (:func:`labels_on_grid`).

    Returns
    -------
    float
        Computed over the cells where both labels are valid (>= 0).

    See Also
    --------
    boundary_f1 : agreement of the walls rather than of the domains.
    sklearn.metrics.adjusted_rand_score : what computes it.

    References
    ----------
    .. [1] L. Hubert, P. Arabie, "Comparing partitions", *J. Classif.* 2, 193-218
       (1985), doi:10.1007/BF01908075.

    Examples
    --------
    >>> import xarray as xr
    >>> pred = xr.DataArray([[0, 0, 1, 1]], dims=("y", "x"))
    >>> truth = xr.DataArray([[5, 5, 2, 2]], dims=("y", "x"))
    >>> adjusted_rand_index(pred, truth)
    1.0
    """
    from sklearn.metrics import adjusted_rand_score

    pred, truth = _paired(pred, truth)
    p, t = np.asarray(pred.values).ravel(), np.asarray(truth.values).ravel()
    valid = (p >= 0) & (t >= 0)
    if not valid.any():
        raise DataError("adjusted_rand_index: no cell has valid labels in both maps")
    return float(adjusted_rand_score(t[valid], p[valid]))


def boundary_scores(pred, truth, tolerance: float = 1.0) -> dict:
    """Precision, recall and F1 of the predicted wall cells within a distance tolerance.

    A predicted wall cell counts as correct when a true wall cell lies within
    ``tolerance`` grid steps (Euclidean, in cells); a true wall cell counts as found
    when a predicted one lies within the same distance. Wall cells are those of
    :func:`~phyvae_dash.analysis.segment.boundary_map` (both sides of a wall).

    Parameters
    ----------
    pred, truth : xarray.DataArray
        Integer labels; ``truth`` is sampled at ``pred``'s grid first when the grids
        differ.
    tolerance : float, optional
        In grid steps of ``pred`` (default 1: a wall one cell off still counts).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (floats). With no wall in either map all
        three are 1; with walls in only one of them, 0.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = np.zeros((6, 10), dtype=int); truth[:, 5:] = 1
    >>> pred = np.zeros((6, 10), dtype=int); pred[:, 6:] = 1      # one cell off
    >>> boundary_scores(xr.DataArray(pred, dims=("y", "x")),
    ...                 xr.DataArray(truth, dims=("y", "x")))["f1"]
    1.0
    """
    pred, truth = _paired(pred, truth)
    pred_wall = np.asarray(boundary_map(pred).values)
    true_wall = np.asarray(boundary_map(truth).values)
    if not pred_wall.any() and not true_wall.any():
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not pred_wall.any() or not true_wall.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # distance from every cell to the nearest wall cell of the other map
    to_true = ndimage.distance_transform_edt(~true_wall)
    to_pred = ndimage.distance_transform_edt(~pred_wall)
    precision = float((to_true[pred_wall] <= tolerance).mean())
    recall = float((to_pred[true_wall] <= tolerance).mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": float(f1)}


def boundary_f1(pred, truth, tolerance: float = 1.0) -> float:
    """F1 score of the predicted domain walls (see :func:`boundary_scores`).

    See Also
    --------
    boundary_scores : precision and recall as well.
    adjusted_rand_index

    References
    ----------
    .. [1] G. Csurka, D. Larlus, F. Perronnin, "What is a good evaluation measure for
       semantic segmentation?", *BMVC* (2013), doi:10.5244/C.27.32.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = np.zeros((6, 10), dtype=int); truth[:, 5:] = 1
    >>> far = np.zeros((6, 10), dtype=int); far[:, 8:] = 1        # three cells off
    >>> boundary_f1(xr.DataArray(far, dims=("y", "x")), xr.DataArray(truth, dims=("y", "x")))
    0.0
    """
    return boundary_scores(pred, truth, tolerance)["f1"]


def boundary_length_ratio(pred, truth) -> float:
    """Predicted over true total wall length, both measured on ``pred``'s grid.

    1 means walls as long as the truth's; ragged walls give more, missed walls less.
    The truth is sampled at ``pred``'s grid points first so that both lengths carry the
    same staircase bias of :func:`~phyvae_dash.analysis.segment.boundary_length`.

    Returns
    -------
    float
        ``inf`` if only the prediction has walls, 1 if neither has.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = np.zeros((6, 10), dtype=int); truth[:, 5:] = 1
    >>> pred = truth.copy(); pred[:2, 1:3] = 2                  # an extra small domain
    >>> boundary_length_ratio(xr.DataArray(pred, dims=("y", "x")),
    ...                       xr.DataArray(truth, dims=("y", "x")))
    2.0
    """
    pred, truth = _paired(pred, truth)
    pred_length, true_length = float(boundary_length(pred)), float(boundary_length(truth))
    if true_length == 0:
        return 1.0 if pred_length == 0 else float("inf")
    return pred_length / true_length


def match_labels(labels, reference) -> xr.DataArray:
    """Renumber ``labels`` so that each domain takes the number of the ``reference``
    domain it overlaps most (one-to-one, by the Hungarian method on the overlap table).

    Label numbers from two segmentations are arbitrary; matched, the same domain has the
    same number (and colour) in both, e.g. a fit and its ``boundary_weight=0`` baseline,
    or a segmentation and the ground truth. Domains left without a partner keep numbers
    above the reference's. Invalid cells (< 0) stay as they are.

    Parameters
    ----------
    labels, reference : xarray.DataArray
        Integer labels ``("y", "x")``; ``reference`` is sampled on ``labels``' grid first
        when the grids differ (:func:`labels_on_grid`).

    Returns
    -------
    xarray.DataArray
        ``labels`` renumbered, with ``attrs["matched_to"]`` naming the reference.

    See Also
    --------
    scipy.optimize.linear_sum_assignment : the assignment it solves.

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", *Naval Res.
       Logist. Q.* 2, 83-97 (1955), doi:10.1002/nav.3800020109.

    Examples
    --------
    >>> import xarray as xr
    >>> labels = xr.DataArray([[1, 1, 0, 0, 2]], dims=("y", "x"))
    >>> reference = xr.DataArray([[0, 0, 1, 1, 1]], dims=("y", "x"))
    >>> match_labels(labels, reference).values.tolist()
    [[0, 0, 1, 1, 2]]
    """
    from scipy.optimize import linear_sum_assignment

    labels, reference = _paired(labels, reference)
    own, ref = np.asarray(labels.values), np.asarray(reference.values)
    valid = (own >= 0) & (ref >= 0)
    n_own, n_ref = int(own.max(initial=-1)) + 1, int(ref.max(initial=-1)) + 1
    overlap = np.zeros((n_own, n_ref), dtype=np.int64)
    np.add.at(overlap, (own[valid], ref[valid]), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.full(max(n_own, 1), -1, dtype=np.int64)
    mapping[rows] = cols
    unmatched = np.flatnonzero(mapping[:n_own] < 0)
    mapping[unmatched] = n_ref + np.arange(unmatched.size)
    out = labels.copy(data=np.where(own >= 0, mapping[np.clip(own, 0, None)], own))
    out.attrs["matched_to"] = str(reference.attrs.get("method", reference.name or "reference"))
    return out
