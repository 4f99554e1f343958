"""An installed damoxing carries its bundled data sets and configs: build a wheel, look inside, run from it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from damoxing.data.bundled import BUNDLED, bundled_path, data_root
from damoxing.recipes.quickstart import PRETRAIN_CONFIG

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "damoxing"


def package_data_files() -> list[str]:
    """Every file in the package folder that is not code, as its path inside a wheel."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_bundled_sets_and_the_quickstart_config_live_in_the_package():
    assert data_root().is_relative_to(PACKAGE) and PRETRAIN_CONFIG.is_relative_to(PACKAGE)
    assert PRETRAIN_CONFIG.is_file()
    assert len(list(bundled_path("shakespeare").glob("*.txt.gz"))) == 10
    for name in sorted(set(BUNDLED) - {"shakespeare"}):
        assert bundled_path(name, "train").is_file() and bundled_path(name, "test").is_file()
    files = package_data_files()
    for name, folder in BUNDLED.items():
        assert any(f.startswith(f"damoxing/data/bundled/{folder}/") for f in files), name


@pytest.mark.slow
def test_a_wheel_carries_every_data_file_and_works_outside_the_checkout(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools in this environment")
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(PACKAGE, source / "damoxing", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("damoxing-*.whl")
    with zipfile.ZipFile(wheel) as z:
        inside = set(z.namelist())
        z.extractall(tmp_path / "site")
    missing = [f for f in package_data_files() if f not in inside]
    assert not missing, f"declare these in pyproject.toml [tool.setuptools.package-data]: {missing}"

    # the installed copy, imported from an unrelated folder, finds its own data and config
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = (
        "import damoxing; from damoxing.data import bundled_path; "
        "from damoxing.recipes.quickstart import PRETRAIN_CONFIG; "
        "print(damoxing.__file__); print(bundled_path('bbc_news', 'train')); print(PRETRAIN_CONFIG)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr
    site = (tmp_path / "site" / "damoxing").resolve()
    package, train, config = (Path(line).resolve() for line in run.stdout.splitlines()[-3:])
    assert package == site / "__init__.py"
    assert train == site / "data" / "bundled" / "bbc_news" / "train.csv.gz" and train.is_file()
    assert config == site / "configs" / "bert-mini-mlm-nsp.yaml" and config.is_file()
