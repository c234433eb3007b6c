"""The suite's own guards: on CI a skipped browser, notebook or real-data suite fails."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.mark.parametrize("on_ci,expected", [("true", 2), ("", 5)])  # 5: no test ran, nothing failed
def test_module_skipped_at_collection_fails_on_ci(tmp_path, on_ci, expected):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_needs_browser.py").write_text(
        "import pytest\npytest.skip('no browser', allow_module_level=True)\n"
        "def test_page():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "CI": on_ci, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == expected, done.stdout + done.stderr
    if on_ci:
        assert "skipped at collection on CI" in done.stdout


def test_realdata_test_skipped_fails_on_ci(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_real.py").write_text(
        "import pytest\n@pytest.mark.realdata\ndef test_file():\n    pytest.skip('no data')\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "CI": "true", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout
