"""Shared fixtures. On CI (CI=true) a skipped real-data or browser test is an error, and
so is a test module skipped while it is collected (a missing browser or package)."""
import os
from pathlib import Path

import pytest

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real experimental files beside the checkout (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and (
        item.get_closest_marker("browser") or item.get_closest_marker("realdata")
        or "shared_data" in getattr(item, "fixturenames", ())
    ):
        # Browser and real-data tests must run on CI: a skip there hides a broken setup.
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where it must run: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level skip (pytest.skip(allow_module_level=True), importorskip) happens
    # at collection, where `pytest_runtest_makereport` never sees it: on CI it would make
    # a whole suite vanish with exit 0.
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped at collection on CI, where it must run: {report.longrepr}"
