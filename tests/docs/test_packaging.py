"""The wheel (what the Docker image installs) holds every package and migrates a database
without the source tree: no alembic/ directory, no alembic.ini beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.docs.test_docs_commands import ROOT


def test_an_installed_wheel_migrates_a_database_on_its_own(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("duban-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {
        str(init.parent.relative_to(ROOT))
        for top in ("service", "workflows", "notifiers")
        for init in (ROOT / top).rglob("__init__.py")
    }
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel (pyproject.toml)"
    migrations = {p.name for p in (ROOT / "alembic" / "versions").glob("*.py")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("duban_alembic/versions/")} == migrations
    assert {"workflows/definitions/blocker.yaml", "notifiers/templates/assigned.j2"} <= set(names)

    target, elsewhere = tmp_path / "site", tmp_path / "run"
    elsewhere.mkdir()
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target), "DUBAN_DATABASE_URL": f"sqlite:///{elsewhere}/duban.db"}
    code = "import sys; from service.cli import main; sys.argv = ['duban', 'db', 'upgrade']; main()"
    upgraded = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    head = max(p.split("_", 1)[0] for p in migrations)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert f"database at {head}" in upgraded.stdout + upgraded.stderr
    where = "import service, service.migrations as m; print(service.__file__); print(m.script_location())"
    shown = subprocess.run([sys.executable, "-c", where], cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    module, scripts = shown.stdout.split()
    assert Path(module).is_relative_to(target) and Path(scripts) == target / "duban_alembic"
