"""The user's code is importable on the driver and on real Ray workers, with no PYTHONPATH, and a
project's own ``analysis``/``models``/``data``/``trainers`` packages never shadow ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from htsweep.sweeps.code_paths import code_roots, import_on_driver, runtime_env

pytestmark = pytest.mark.integration

SHADOWS = ("analysis", "models", "data", "trainers")

# Run from the project folder in a fresh interpreter: the test session's Ray and sys.path stay out.
SCRIPT = """
import json, os, sys
import ray
from htsweep.sweeps.code_paths import code_roots, import_on_driver, runtime_env
from htsweep.sweeps.lifecycle import own_ray
from htsweep.trainers.user_code import resolve

roots = code_roots("specs/sweep.yaml")
import_on_driver(roots)

def probe():
    import htsweep.analysis, htsweep.trainers.models, htsweep.trainers.data  # ours, whatever is on the path
    net = resolve("mynets.nets:tiny", field="model")()           # in the spec's folder
    make = resolve("mylib.data:make", field="dataset")            # in the working directory
    return {"net": type(net).__name__, "data": make(), "analysis": htsweep.analysis.__file__,
            "nets_file": sys.modules["mynets.nets"].__file__, "pid": os.getpid()}

out = {"driver": probe()}
with own_ray(None, runtime_env=runtime_env(roots, ship=sys.argv[1] == "ship")):  # job level only
    out["worker"] = ray.get(ray.remote(num_cpus=0.5)(probe).remote())
print("RESULT " + json.dumps(out))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A research project with its own analysis/models/data/trainers packages that raise on import."""
    proj = tmp_path / "proj"
    for name in SHADOWS:
        (proj / name).mkdir(parents=True)
        (proj / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    (proj / "specs" / "mynets").mkdir(parents=True)
    (proj / "specs" / "mynets" / "__init__.py").write_text("")
    (proj / "specs" / "mynets" / "nets.py").write_text(textwrap.dedent("""
        from torch import nn
        def tiny():
            return nn.Linear(2, 2)
    """))
    (proj / "specs" / "sweep.yaml").write_text("name: x\n")
    (proj / "mylib").mkdir()
    (proj / "mylib" / "__init__.py").write_text("")
    (proj / "mylib" / "data.py").write_text("def make():\n    return 'made'\n")
    return proj


def _run(project: Path, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=project, env=env, capture_output=True,
                          text=True, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    for where in ("driver", "worker"):
        got = out[where]
        assert got["net"] == "Linear" and got["data"] == "made", where
        assert not got["analysis"].startswith(str(project)), where  # htsweep.analysis is ours
    assert out["worker"]["pid"] != out["driver"]["pid"]
    assert out["driver"]["nets_file"] == str(project / "specs/mynets/nets.py")
    return out


def test_code_roots_reach_driver_and_workers_and_nothing_shadows_ours(project: Path):
    out = _run(project, "pythonpath")
    assert out["worker"]["nets_file"] == str(project / "specs/mynets/nets.py")


@pytest.mark.slow
def test_ship_code_workers_import_from_rays_uploaded_copy(project: Path):
    out = _run(project, "ship")
    shipped = out["worker"]["nets_file"]
    assert "working_dir_files" in shipped and shipped.endswith("specs/mynets/nets.py")


def test_runtime_env_keeps_an_inherited_pythonpath_and_excludes_the_sweep(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    roots = code_roots(tmp_path / "specs" / "s.yaml", cwd=tmp_path)
    env = runtime_env(roots, ship=True, cwd=tmp_path, exclude=["/runs/x/"])
    assert env["env_vars"]["PYTHONPATH"].split(os.pathsep) == ["specs", ".", "/opt/site"]
    assert env["working_dir"] == str(tmp_path.resolve()) and "/runs/x/" in env["excludes"]
    before = list(sys.path)
    try:
        import_on_driver(roots)
        import_on_driver(roots)  # idempotent
        assert sys.path[:2] == list(roots) and len(sys.path) == len(before) + 2
    finally:
        sys.path[:] = before
