"""phyvae_dash.data.datasets: phantoms by name, real files from a local cache, no network."""
import hashlib

import pooch
import pytest

from phyvae_dash.data import synthetic_spectral
from phyvae_dash.data import datasets
from phyvae_dash.errors import DataError

REAL_LOADABLE = ["pzt_pfm", "pto_pfm", "singfreq_pfm", "bfo_iv", "mos2_stem", "dm3_um_test"]


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test (pytest's Failed is not an Exception)."""
    def refuse(url, *args, **kwargs):
        pytest.fail(f"tried to download {url}")

    monkeypatch.setattr(pooch.core, "stream_download", refuse)


@pytest.fixture
def shared_cache(shared_data, monkeypatch, no_network):
    """The registry's cache pointed at ../shared/data, as on CI."""
    monkeypatch.setenv(datasets.ENV_VAR, str(shared_data))
    return shared_data


def test_list_datasets_has_phantoms_and_real_files():
    names = datasets.list_datasets()
    assert names[:4] == ["graphene_grains", "bfo_stripes", "nio_lsmo", "pfm_labyrinth"]
    assert set(REAL_LOADABLE) <= set(datasets.list_datasets("real"))
    assert {"smbfo_composition_series", "graphene_stem_movies", "smbfo_haadf_sm0"} <= set(names)
    with pytest.raises(Exception, match="kind"):
        datasets.list_datasets("movies")


def test_phantom_names_match_synthetic_kinds():
    from phyvae_dash.data import synthetic

    assert tuple(datasets.list_datasets("phantom")) == (*synthetic.KINDS,
                                                         *synthetic_spectral.KINDS)


def test_phantoms_load_by_name_and_are_deterministic():
    a = datasets.load_dataset("bfo_stripes", shape=(64, 64), seed=4)
    b = datasets.load_dataset("bfo_stripes", shape=(64, 64), seed=4)
    assert {"image", "labels", "boundaries"} <= set(a.data_vars)
    assert a.identical(b)
    assert datasets.describe("bfo_stripes")["kind"] == "phantom"


def test_describe_real_entries():
    for name in datasets.list_datasets("real"):
        info = datasets.describe(name)
        assert info["url"].startswith("https://")
        assert info["description"] and info["origin"] and info["licence"]
        if name in REAL_LOADABLE:
            assert len(info["sha256"]) == 64  # every small public file is verified
            assert "raw.githubusercontent.com" in info["url"]
        else:
            assert "zenodo.org/record/" in info["url"] and info["sha256"] is None
    assert datasets.describe("pzt_pfm")["path"] == "pfm/PZT_final0001.h5"


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'pzt'.*pzt_pfm"):
        datasets.load_dataset("pzt")
    with pytest.raises(DataError, match="unknown dataset"):
        datasets.describe("nope")


def test_pickled_zenodo_files_are_refused_before_download(no_network):
    with pytest.raises(DataError, match="never unpickles"):
        datasets.load_dataset("smbfo_composition_series")
    assert not datasets.describe("graphene_stem_movies")["loadable"]
    assert all(datasets.describe(n)["loadable"] for n in REAL_LOADABLE)


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert datasets.cache_dir() == tmp_path
    monkeypatch.delenv(datasets.ENV_VAR)
    assert datasets.cache_dir() == pooch.os_cache("phyvae-dash")


@pytest.mark.realdata
def test_registered_checksums_match_shared_files(shared_data):
    for name in REAL_LOADABLE:
        for f in datasets._REAL[name].files:
            digest = hashlib.sha256((shared_data / f.path).read_bytes()).hexdigest()
            assert digest == f.sha256, f.path


@pytest.mark.realdata
def test_real_files_resolve_from_local_cache_without_network(shared_cache):
    for name in REAL_LOADABLE:
        path = datasets.fetch(name)
        assert path.resolve() == (shared_cache / datasets.describe(name)["path"]).resolve()
        assert datasets.describe(name)["cached"]


@pytest.mark.realdata
def test_load_real_datasets_with_default_channels(shared_cache):
    pzt = datasets.load_dataset("pzt_pfm")
    assert pzt.channel.values.tolist() == ["AmplitudeRetrace", "PhaseRetrace"]
    assert pzt.attrs["dataset"] == "pzt_pfm"
    assert pzt.attrs["phase_channels"] == ["PhaseRetrace"]
    assert datasets.load_dataset("pzt_pfm", channel="all").sizes["channel"] == 8
    assert datasets.load_dataset("singfreq_pfm", channel="PhaseRetrace").dims == ("y", "x")
    assert datasets.load_dataset("bfo_iv").shape == (50, 50, 53)
    mos2 = datasets.load_dataset("mos2_stem")  # the JSON sidecar comes along
    assert mos2.x.attrs["units"] == "nm"


def test_wrong_checksum_in_cache_means_redownload_and_clear_error(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch.core, "stream_download", offline)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    (tmp_path / "pfm").mkdir()
    (tmp_path / "pfm" / "PZT_final0001.h5").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"pzt_pfm.*PZT_final0001\.h5.*network is unreachable"):
        datasets.load_dataset("pzt_pfm")
