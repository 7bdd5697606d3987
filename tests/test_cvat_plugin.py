"""The CVAT UI plugin's own checks (cvat-plugin/): its unit tests (vitest), type check (tsc) and lint (eslint),
run with the packages its package-lock.json pins."""

import shutil
import subprocess
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "cvat-plugin"


@pytest.fixture(scope="module")
def npm():
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm (node >= 20) is needed to check the CVAT plugin in cvat-plugin/")
    installed = PLUGIN / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (PLUGIN / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PLUGIN, check=True, timeout=900, capture_output=True)
    return npm


@pytest.mark.parametrize("script", ["test", "typecheck", "lint"])
def test_plugin_check(npm, script):
    result = subprocess.run([npm, "run", script], cwd=PLUGIN, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"npm run {script} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
