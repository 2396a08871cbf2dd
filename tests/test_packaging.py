"""The built wheel, installed into a fresh virtual environment: what users get, not the checkout that an
editable install points at (which would hide a package missing from ``pyproject.toml`` or a plugin
that only imports because ``plugin/`` happens to be on the path)."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

from tlaudit._version import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # from a clean copy of the sources: a build/ folder left in the checkout would hand stale modules on
    source = tmp_path_factory.mktemp("source") / "tlaudit"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [built] = out.glob("tlaudit-*.whl")
    return built


def test_the_wheel_holds_every_package_the_plugin_and_the_metadata(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in sorted((ROOT / "tlaudit").rglob("__init__.py")):
        assert init.relative_to(ROOT).as_posix() in names, f"{init.parent.name} is not packaged (pyproject.toml packages)"
    assert "pytest_tlaudit/__init__.py" in names and not any(n.startswith("plugin/") for n in names)
    assert {"tlaudit/py.typed", "tlaudit/examples/correct.py"} <= names
    info = f"tlaudit-{__version__}.dist-info"
    meta = email.message_from_string(zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode())
    assert meta["Version"] == __version__  # one source: tlaudit/_version.py
    assert meta["License-Expression"] == "MIT" and f"{info}/licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "tlaudit = pytest_tlaudit" in entry_points and "tlaudit = tlaudit.cli:main" in entry_points


def test_the_installed_wheel_runs_the_cli_and_the_plugin(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    # the dependencies (torch, pytest, tabulate) from this environment, after the wheel on the path; a path
    # line in a .pth is not itself searched for .pth files, so this checkout's editable install stays off
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import pytest_tlaudit, tlaudit.cli, tlaudit.auditing.checks; print(pytest_tlaudit.__file__); print(tlaudit.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the checkout: -c puts the cwd first
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    version = subprocess.run([str(python), "-m", "tlaudit", "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert version.stdout.strip() == f"tlaudit {__version__}"
    (tmp_path / "test_uses_the_fixture.py").write_text(
        textwrap.dedent("""
        import torch

        def test_frozen(tlaudit):
            model = torch.nn.Linear(2, 2).requires_grad_(False)
            tlaudit.assert_frozen(model)
    """)
    )
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path / "test_uses_the_fixture.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
