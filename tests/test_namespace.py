"""One import namespace: everything is ``htsweep.*``, and nothing installs a bare ``analysis``.

A research project often has its own ``analysis/``, ``models/`` or ``trainers/`` package; if ours
were importable under those names, one of the two would shadow the other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("analysis", "trainers", "services", "sweeps")
SOURCES = ("htsweep", *FOLDERS, "tests", "benchmarks", "examples")


def _bare_imports(path: Path) -> list[str]:
    """``import analysis`` / ``from sweeps.spec import ...`` lines of one file: ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def test_no_file_imports_a_package_folder_by_its_bare_name():
    files = [p for top in SOURCES if (REPO / top).is_dir() for p in (REPO / top).rglob("*.py")]
    assert len(files) > 100
    offenders = [hit for path in files for hit in _bare_imports(path)]
    assert offenders == [], "import these through the htsweep namespace"


def test_installed_package_maps_the_top_level_folders():
    import htsweep.analysis
    import htsweep.sweeps.cli

    assert Path(htsweep.analysis.__file__).resolve() == REPO / "analysis" / "__init__.py"
    assert Path(htsweep.sweeps.cli.__file__).resolve().parent == REPO / "sweeps"
    assert callable(htsweep.analyze_model) and "heavy_tailed" in htsweep.PHASES


@pytest.mark.integration
def test_the_wheel_holds_only_the_htsweep_namespace(tmp_path):
    # --no-build-isolation: the venv's setuptools builds it offline in a few seconds.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("htsweep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"htsweep"}
    for folder in FOLDERS:
        assert f"htsweep/{folder}/__init__.py" in names
    assert "htsweep/sweeps/examples/quickstart.yaml" in names
    assert "htsweep/trainers/corpus/tinyworld.txt" in names
    top_level = [n for n in names if n.endswith("top_level.txt")]
    if top_level:  # setuptools writes it; it must name only htsweep
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["htsweep"]
