"""Querying a finished sweep the way researchers do (the session's tiny sweep, `finished`):
which spectral metric tracks test accuracy (`best`, report), spectra over time in the report, what
the MLflow UI shows first (REST API and a real headless Chromium), Optuna's dashboard and
`status --watch`."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import Browser, find_chromium
from scipy import stats
from sweep_helpers import REPO, cli_env, htsweep_cmd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

N_TRIALS = 4


def _trials(workdir: Path):
    from htsweep.sweeps.status import load_trials

    return load_trials(workdir)


def _client(workdir: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")


def _alpha_mean_per_trial(workdir: Path, rows) -> dict[int, float]:
    """Independent of sweeps.trial_data: mean α over fitted layers from each spectral_summary.json."""
    client = _client(workdir)
    out = {}
    for r in rows:
        path = client.download_artifacts(r.mlflow_run_id, "spectral_summary.json", str(workdir.parent / f"s{r.number}"))
        alphas = [x["alpha"] for x in json.loads(Path(path).read_text())["layers"]]
        out[r.number] = float(np.mean([a for a in alphas if a is not None and math.isfinite(a)]))
    return out


def test_trial_runs_carry_alpha_phase_objective_up_front(finished):
    from htsweep.services.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, NOTE_TAG

    workdir, proc = finished
    assert proc.returncode == 0, proc.stdout[-3000:]
    _, _, rows = _trials(workdir)
    client = _client(workdir)
    exp = client.get_experiment_by_name("e2e")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    for r in rows:
        run = client.get_run(r.mlflow_run_id)
        m, tags = run.data.metrics, run.data.tags
        # the short names hold exactly what Optuna received for the trial
        assert m["alpha"] == pytest.approx(r.attrs["alpha_agg"], rel=1e-12)
        assert m["objective"] == pytest.approx(r.values[0], rel=1e-12)
        assert m["test_acc"] == pytest.approx(r.test_acc, rel=1e-12)
        assert tags["phase"] == r.phase
        assert tags[NOTE_TAG].startswith(f"α {r.alpha:.3g} · {r.phase} · test acc {r.test_acc:.3g} · objective")


def test_parent_run_holds_the_trials_and_correlation_tables(finished, tmp_path):
    import pandas as pd

    workdir, _ = finished
    meta, _, rows = _trials(workdir)
    client = _client(workdir)
    parent = client.get_run(meta.parent_run_id)
    logged = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "trials.json", "type": "table"} in logged
    assert {"path": "metric_vs_generalization.json", "type": "table"} in logged
    trials = pd.read_json(client.download_artifacts(meta.parent_run_id, "trials.json", str(tmp_path)), orient="split")
    assert list(trials["trial"]) == [r.number for r in rows]
    np.testing.assert_allclose(trials["alpha"], [r.alpha for r in rows], rtol=1e-12)
    corr = pd.read_json(client.download_artifacts(meta.parent_run_id, "metric_vs_generalization.json", str(tmp_path)),
                        orient="split")
    assert {"alpha_mean", "alpha_weighted", "log_alpha_norm", "alpha_hill", "stable_rank", "mp_soft_rank",
            "n_spikes"} <= set(corr["metric"])
    assert "Best-correlated spectral metric" in parent.data.tags["mlflow.note.content"]
    assert "report/index.html" in [f.path for f in client.list_artifacts(meta.parent_run_id, "report")]


def test_best_prints_the_metric_generalization_table(finished):
    from rich.console import Console

    from htsweep.sweeps.status import print_best

    workdir, _ = finished
    _, _, rows = _trials(workdir)
    console = Console(record=True, width=200)
    print_best(workdir, console=console)
    out = console.export_text()
    words = " ".join(out.split())  # the title and caption wrap to the table's width
    assert f"Which spectral metric tracks test accuracy? Rank correlation over {N_TRIALS} trials" in words
    # independent check of the alpha_mean row: scipy on values read straight from MLflow
    alpha = _alpha_mean_per_trial(workdir, rows)
    rho = stats.spearmanr([alpha[r.number] for r in rows], [r.test_acc for r in rows]).statistic
    line = next(ln for ln in out.splitlines() if "alpha_mean" in ln)
    assert f"{rho:+.2f} [" in line and "†" in line  # 4 trials: flagged as too few
    # a column within each batch size that has at least 3 trials (lr varies inside it), none for the others
    for b in (8, 32):
        k = sum(r.params["batch_size"] == b for r in rows)
        assert (f"={b} (n={k})" in out) == (k >= 3)
    assert "fewer trials than needed for a meaningful estimate" in words


def test_report_answers_the_questions(finished):
    workdir, _ = finished
    report = workdir / "report"
    html = (report / "index.html").read_text()
    assert "Which spectral metric tracks generalization?" in html
    for metric in ("alpha_mean", "alpha_weighted", "log_alpha_norm", "alpha_hill", "stable_rank", "mp_soft_rank",
                   "n_spikes"):
        assert f"<b>{metric}</b>" in html
    assert f"Spearman ρ [95% CI] (n={N_TRIALS})" in html
    _, _, rows = _trials(workdir)
    for b in (8, 32):  # groups of fewer than 3 trials have no within-group column
        assert (f"ρ within batch_size={b}" in html) == (sum(r.params["batch_size"] == b for r in rows) >= 3)
    assert "Grey: fewer than 10 trials — too few for a meaningful estimate" in html
    for png in ("best_metric_vs_target.png", "trajectories.png", "esd_evolution.png"):
        assert (report / png).stat().st_size > 5_000, png
        assert png in html
    assert "α trajectories and phase timeline" in html


def test_trial_history_and_esd_series_match_mlflow(finished):
    from htsweep.sweeps.trial_data import esd_series, trial_history

    workdir, _ = finished
    meta, _, rows = _trials(workdir)
    row = rows[0]
    hist = trial_history(meta, row, layer_order=["fc1", "fc2", "fc3", "fc4"])
    assert list(hist.steps) == [20, 40] and hist.layers[:3] == ["fc1", "fc2", "fc3"]
    ref = {m.step: m.value for m in _client(workdir).get_metric_history(row.mlflow_run_id, "alpha/fc2")}
    np.testing.assert_array_equal(hist.alpha[1], [ref[20], ref[40]])
    assert np.all(np.isin(hist.phase_code[:3], np.arange(6)))
    steps, spectra = esd_series(meta, row, "fc2")
    assert steps == [20, 40] and all(s.shape == (32,) and np.all(np.diff(s) >= 0) for s in spectra)


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_line(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 180) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"no {pattern!r} in time: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # htsweep ui stops its server's process group on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def servers(finished, tmp_path_factory):
    """`htsweep ui` and `htsweep ui --optuna` on the finished sweep, started side by side."""
    from htsweep.services.mlflow_server import free_port

    workdir, _ = finished
    tmp = tmp_path_factory.mktemp("ui")
    optuna_port = free_port()
    mlflow_log, optuna_log = tmp / "ui.log", tmp / "optuna.log"
    procs = [_start(htsweep_cmd("ui", workdir, "--port", str(free_port())), mlflow_log)]
    if importlib.util.find_spec("optuna_dashboard") is not None:
        procs.append(_start(htsweep_cmd("ui", workdir, "--optuna", "--port", str(optuna_port)), optuna_log))
    try:
        yield {"mlflow": (procs[0], mlflow_log), "optuna": (procs[1], optuna_log, optuna_port) if len(procs) > 1
               else None}
    finally:
        for proc in procs:
            _stop(proc)


def test_mlflow_ui_lands_on_trial_runs_with_alpha_and_phase(finished, servers, tmp_path):
    workdir, _ = finished
    _, _, rows = _trials(workdir)
    proc, log = servers["mlflow"]
    url = _wait_line(proc, log, r"MLflow UI for \S+: (http://\S+)").group(1)
    base, _, fragment = url.partition("/#")
    assert re.fullmatch(r"/experiments/\d+/runs\?viewStateShareKey=htsweep-trials&workflowType=machine_learning",
                        fragment), url
    # The API the runs page calls: the saved view's filter returns the trials with alpha and phase.
    exp_id = fragment.split("/")[2]
    body = json.dumps({"experiment_ids": [exp_id], "filter": "tags.`htsweep.role` = 'trial'",
                       "order_by": ["metrics.`objective` ASC"], "max_results": 100}).encode()
    req = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        runs = json.load(resp)["runs"]
    assert len(runs) == N_TRIALS
    for run in runs:
        assert "alpha" in {m["key"] for m in run["data"]["metrics"]}
        assert "phase" in {t["key"] for t in run["data"]["tags"]}
    objectives = [next(m["value"] for m in r["data"]["metrics"] if m["key"] == "objective") for r in runs]
    assert objectives == sorted(objectives)

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium): rendered-table check skipped")
    pytest.importorskip("websocket", reason="websocket-client (dev extra) drives the browser")
    with Browser(chromium, width=1900, height=900) as browser:
        browser.goto(url)  # a first visit: MLflow's assistant pane may open beside the table
        grid = browser.wait_for("document.querySelectorAll('.ag-center-cols-container .ag-row').length >= 4 && "
                                "document.querySelector('.ag-root-wrapper').innerText", timeout=120)
        shot = browser.screenshot(tmp_path / "runs_table.png")
        if os.environ.get("HTSWEEP_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["HTSWEEP_SCREENSHOT_DIR"]) / "mlflow_runs_table.png")
    headers = grid.split("\n")
    assert "alpha" in headers and "phase" in headers, grid[:2000]
    for r in rows:  # every trial's phase and alpha are in the rendered cells
        assert r.phase in grid
        assert str(r.alpha)[:4] in grid or f"{r.alpha:.3g}" in grid, (r.alpha, grid[:2000])


def test_optuna_dashboard_serves_the_study(servers):
    if servers["optuna"] is None:
        pytest.skip("optuna-dashboard not installed (pip install 'htsweep[dashboard]')")
    proc, log, port = servers["optuna"]
    url = _wait_line(proc, log, r"Optuna dashboard for \S+: (http://127\.0\.0\.1:\d+/dashboard/studies/\d+)").group(1)
    assert url.startswith(f"http://127.0.0.1:{port}/")
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as resp:
                studies = json.load(resp)["study_summaries"]
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    study = next(s for s in studies if s["study_name"] == "e2e")
    assert url.endswith(f"/dashboard/studies/{study['study_id']}")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200 and b"<html" in resp.read().lower()


def test_optuna_dashboard_errors_are_one_line(finished, tmp_path):
    pytest.importorskip("optuna_dashboard", reason="pip install 'htsweep[dashboard]'")
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.ui_cmd import serve_optuna_dashboard
    from htsweep.sweeps.workdir import SweepMeta

    workdir, _ = finished
    meta = SweepMeta.load(workdir)
    missing = SweepMeta(**{**meta.__dict__, "name": "no-such-sweep", "study_name": "no-such-study"})
    with pytest.raises(SpecError, match=r"sweep 'no-such-sweep' has no Optuna study 'no-such-study' yet in "
                                        r"sqlite:///"):
        serve_optuna_dashboard(missing, port=0)


def test_status_watch_on_a_finished_sweep_prints_once_and_stops(finished):
    from rich.console import Console

    from htsweep.sweeps.status import watch_status

    workdir, _ = finished
    console = Console(record=True, width=200)
    t0 = time.monotonic()
    rows = watch_status(workdir, interval=30, console=console)
    assert time.monotonic() - t0 < 20  # no refresh loop once the sweep is not running
    out = console.export_text()
    assert len(rows) == N_TRIALS and out.count("COMPLETE") == N_TRIALS
    assert "ESD actor: sweep not running" in out and "final state" in out
    with pytest.raises(ValueError, match=r"--interval must be > 0 seconds, got 0"):
        watch_status(workdir, interval=0)


def test_trials_are_grouped_by_choices_and_short_grids_not_by_scans():
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.trial_data import MAX_GROUP_LEVELS, categorical_params

    spec = SweepSpec.from_dict({
        "name": "groups", "model": "mlp3", "dataset": "digits", "train": {"steps": 10},
        "search": {"optimizer": {"type": "grid", "values": ["sgd", "adam"]},
                   "batch_size": {"type": "grid", "values": [4, 16, 64]},
                   "lr": {"type": "grid", "values": [0.01 * 1.5 ** i for i in range(MAX_GROUP_LEVELS + 1)]}}})
    assert categorical_params(spec) == ["optimizer", "batch_size"]
    sampled = SweepSpec.from_dict({
        "name": "groups", "model": "mlp3", "dataset": "digits", "train": {"steps": 10},
        "search": {"optimizer": {"type": "choice", "values": ["sgd", "adam"]},
                   "weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}})
    assert categorical_params(sampled) == ["optimizer"]


def test_alpha_vs_accuracy_has_one_panel_per_grouping_hyperparameter(tmp_path):
    import struct

    from htsweep.sweeps.report import plot_alpha_vs_accuracy
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.status import TrialRow

    def width_px(path):  # PNG IHDR: width is the big-endian uint32 at byte 16
        return struct.unpack(">I", path.read_bytes()[16:20])[0]

    base = {"name": "facets", "model": "mlp3", "dataset": "digits", "train": {"steps": 10}}
    two = SweepSpec.from_dict({**base, "search": {"optimizer": {"type": "grid", "values": ["sgd", "adam"]},
                                                  "batch_size": {"type": "grid", "values": [8, 32]}}})
    one = SweepSpec.from_dict({**base, "search": {"lr": {"type": "loguniform", "low": 0.01, "high": 0.1}}})
    rows = [TrialRow(number=i, state="COMPLETE", alpha=2.0 + i / 4, test_acc=0.9 - i / 50, phase="heavy_tailed",
                     params={"optimizer": ["sgd", "adam"][i % 2], "batch_size": [8, 32][i // 2], "lr": 0.01 * (i + 1)})
            for i in range(4)]
    faceted = plot_alpha_vs_accuracy(two, rows, rows[0], tmp_path / "two.png")
    single = plot_alpha_vs_accuracy(one, rows, rows[0], tmp_path / "one.png")
    assert width_px(faceted) == 2 * width_px(single)
