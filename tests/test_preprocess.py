"""phyvae_dash.data.preprocess: each step does what it says and records itself."""
import numpy as np
import pytest
import xarray as xr

from phyvae_dash.data import preprocess as pp
from phyvae_dash.errors import DataError, SettingsError


def _pfm(ny=40, nx=50, seed=0):
    """A two-channel PFM-like scan: tilted, line-offset amplitude and a 2-level phase."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx]
    domains = (xx > nx // 2).astype(float)
    amplitude = 1.0 + 0.5 * domains + 0.01 * rng.standard_normal((ny, nx))
    phase = np.where(domains > 0, 170.0, -10.0)
    return xr.DataArray(
        np.stack([amplitude, phase], axis=-1), dims=("y", "x", "channel"),
        coords={"y": ("y", np.arange(ny) * 0.1, {"units": "µm"}),
                "x": ("x", np.arange(nx) * 0.1, {"units": "µm"}),
                "channel": ["Amplitude", "Phase"]},
        attrs={"channel_units": ["m", "deg"], "phase_channels": ["Phase"], "source": "test"},
    )


def test_flatten_removes_plane_and_keeps_phase():
    image = _pfm()
    yy, xx = np.mgrid[:40, :50]
    tilted = image.copy()
    tilted.loc[{"channel": "Amplitude"}] = image.sel(channel="Amplitude") + 0.03 * xx - 0.02 * yy + 5
    flat = pp.flatten(tilted)
    # The fit is linear in the data: an added plane is removed exactly.
    xr.testing.assert_allclose(flat, pp.flatten(image))
    assert float(abs(flat.sel(channel="Amplitude").mean())) < 1e-9
    xr.testing.assert_equal(flat.sel(channel="Phase"), image.sel(channel="Phase"))
    assert flat.attrs["preprocessing"] == ["flatten(order=1, channels=['Amplitude'])"]
    assert flat.attrs["source"] == "test" and "preprocessing" not in image.attrs


def test_flatten_second_order_removes_bow():
    yy, xx = np.mgrid[:30, :30].astype(float)
    bowed = xr.DataArray(0.01 * (xx - 15) ** 2 + 0.002 * xx * yy + 1.0, dims=("y", "x"))
    assert float(abs(pp.flatten(bowed, order=2)).max()) < 1e-9
    assert float(abs(pp.flatten(bowed, order=1)).max()) > 0.5


def test_flatten_spectral_map_and_bad_order():
    cube = xr.DataArray(np.ones((8, 8, 20)) + np.arange(8.0)[None, :, None], dims=("y", "x", "bias"))
    assert float(abs(pp.flatten(cube)).max()) < 1e-9
    with pytest.raises(SettingsError, match="order"):
        pp.flatten(cube, order=-1)


def test_correct_scan_lines_removes_line_offsets():
    image = _pfm()
    offsets = np.random.default_rng(3).normal(0, 0.5, size=40)
    jumpy = image.copy()
    jumpy.loc[{"channel": "Amplitude"}] = image.sel(channel="Amplitude") + offsets[:, None]
    fixed = pp.correct_scan_lines(jumpy)
    row_medians = fixed.sel(channel="Amplitude").median("x")
    assert float(row_medians.std()) < 0.01
    # The domain contrast within each line survives.
    contrast = fixed.sel(channel="Amplitude")[:, 40] - fixed.sel(channel="Amplitude")[:, 5]
    np.testing.assert_allclose(contrast, 0.5, atol=0.06)
    xr.testing.assert_equal(fixed.sel(channel="Phase"), image.sel(channel="Phase"))
    assert "correct_scan_lines(method='median'" in fixed.attrs["preprocessing"][0]
    mean_fixed = pp.correct_scan_lines(jumpy, method="mean", channels=["Amplitude", "Phase"])
    assert "channels" not in mean_fixed.attrs["preprocessing"][0]
    with pytest.raises(SettingsError, match="method"):
        pp.correct_scan_lines(jumpy, method="poly")
    with pytest.raises(DataError, match="no channel 'Height'"):
        pp.correct_scan_lines(jumpy, channels=["Height"])


def test_clip_outliers_per_channel():
    image = _pfm()
    hot = image.copy()
    hot[3, 4, 0] = 1e6
    clipped = pp.clip_outliers(hot, percentile=(1, 99))
    assert float(clipped.sel(channel="Amplitude").max()) < 2
    assert float(clipped.sel(channel="Phase").max()) == 170.0  # clipped to its own limits
    assert clipped.attrs["preprocessing"] == ["clip_outliers(percentile=(1, 99))"]
    with pytest.raises(SettingsError):
        pp.clip_outliers(hot, percentile=(99, 1))
    with pytest.raises(SettingsError):
        pp.clip_outliers(hot, percentile=5)


def test_downsample_averages_values_and_coordinates():
    image = _pfm(ny=41, nx=50)  # 41 rows: the last, incomplete bin is dropped
    binned = pp.downsample(image, 2)
    assert binned.sizes == {"y": 20, "x": 25, "channel": 2}
    amp = image.sel(channel="Amplitude").values
    np.testing.assert_allclose(binned.sel(channel="Amplitude")[3, 4],
                               amp[6:8, 8:10].mean())
    np.testing.assert_allclose(binned.x.values[:2], [0.05, 0.25])
    assert binned.x.attrs["units"] == "µm"
    assert binned.attrs["preprocessing"] == ["downsample(factor=2)"]
    assert pp.downsample(image, (1, 5)).sizes["x"] == 10
    with pytest.raises(SettingsError):
        pp.downsample(image, 0)
    with pytest.raises(SettingsError, match="larger than the image"):
        pp.downsample(image, 100)


def test_downsample_averages_phase_on_the_circle():
    phase = xr.DataArray(np.tile([179.0, -179.0], (2, 1)), dims=("y", "x"), name="Phase",
                         attrs={"units": "deg", "phase_channels": ["Phase"]})
    binned = pp.downsample(phase, 2)
    # -179 and 179 degrees are 2 degrees apart across 180, not 358 apart across 0.
    assert binned.shape == (1, 1)
    assert binned.item() % 360 == pytest.approx(180.0)


def test_phase_to_cos_sin_degrees_and_radians():
    image = _pfm()
    out = pp.phase_to_cos_sin(image)
    assert out.channel.values.tolist() == ["Amplitude", "Phase_cos", "Phase_sin"]
    np.testing.assert_allclose(out.sel(channel="Phase_cos")[0, 0], np.cos(np.deg2rad(-10)))
    assert out.attrs["channel_units"] == ["m", "1", "1"]
    assert out.attrs["phase_channels"] == []
    assert out.attrs["preprocessing"] == ["phase_to_cos_sin(channel=['Phase'])"]
    # Units unknown: a range of pi means radians.
    rad = image.copy(data=np.stack([image[..., 0], np.deg2rad(image[..., 1])], axis=-1))
    rad.attrs["channel_units"] = ["m", ""]
    np.testing.assert_allclose(pp.phase_to_cos_sin(rad, "Phase").sel(channel="Phase_cos"),
                               out.sel(channel="Phase_cos"))


def test_phase_to_cos_sin_errors():
    image = _pfm()
    with pytest.raises(DataError, match="no channel 'phase'"):
        pp.phase_to_cos_sin(image, "phase")
    with pytest.raises(DataError, match="no phase channel"):
        pp.phase_to_cos_sin(image.sel(channel=["Amplitude"]).assign_attrs(phase_channels=[]))


def test_bad_inputs():
    with pytest.raises(DataError, match="dims"):
        pp.flatten(xr.DataArray(np.ones(5), dims=("x",)))
    with pytest.raises(DataError, match="DataArray"):
        pp.downsample(np.ones((4, 4)), 2)


@pytest.mark.realdata
def test_real_pzt_pipeline(shared_data, tmp_path):
    from phyvae_dash.data.io import load

    image = load(shared_data / "pfm" / "PZT_final0001.h5",
                 channel=["AmplitudeRetrace", "PhaseRetrace"])
    out = pp.phase_to_cos_sin(pp.downsample(pp.correct_scan_lines(pp.flatten(image)), 2))
    assert out.sizes == {"y": 128, "x": 128, "channel": 3}
    assert len(out.attrs["preprocessing"]) == 4
    # cos and sin of a phase lie on the unit circle.
    norm = out.sel(channel="PhaseRetrace_cos") ** 2 + out.sel(channel="PhaseRetrace_sin") ** 2
    np.testing.assert_allclose(norm, 1, atol=1e-5)
    out.to_netcdf(tmp_path / "pzt.nc")  # attrs stay NetCDF-safe
    assert all(isinstance(s, str) for s in out.attrs["preprocessing"])


@pytest.mark.realdata
def test_lone_phase_channel_is_not_levelled(shared_data):
    """Levelling a single phase channel would erase the 180-degree domains it shows."""
    from phyvae_dash import load

    phase = load(shared_data / "pfm" / "SingFreqPFM_0003.h5", channel="PhaseRetrace")
    for step in (pp.correct_scan_lines, pp.flatten):
        out = step(phase)
        np.testing.assert_array_equal(out.values, phase.values)
        assert "phase channel left unchanged" in out.attrs["preprocessing"][-1]
