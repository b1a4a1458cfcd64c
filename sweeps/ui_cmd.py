"""``htsweep ui``: the web UIs of a sweep, opened where the science is.

* MLflow (default): before the server starts, the sweep's experiment is marked as a model-training
  experiment and given a saved runs-table view (:func:`services.tracking.configure_experiment_ui`),
  so the printed URL lands on the trial runs with α, phase, test accuracy / loss and the objective
  as columns, sorted by the objective.
* Optuna (``--optuna``): ``optuna-dashboard`` (the ``[dashboard]`` extra) on the sweep's study,
  bound to 127.0.0.1, printing the study's page.
"""

from __future__ import annotations

from htsweep.services.redact import redact
from htsweep.sweeps.spec import SpecError
from htsweep.sweeps.workdir import SweepMeta

__all__ = ["mlflow_runs_page", "remote_runs_page", "serve_optuna_dashboard"]

LOCALHOST = "127.0.0.1"


def mlflow_runs_page(meta: SweepMeta, *, base_url: str = "") -> str:
    """Set up the sweep's experiment for the UI and return its trial-runs page (``base_url`` + path).

    Returns ``base_url`` alone when the sweep has no MLflow experiment yet.
    """
    import mlflow

    from htsweep.services.tracking import configure_experiment_ui, runs_table_url

    spec = meta.spec()
    if mlflow.MlflowClient(meta.tracking_uri).get_experiment_by_name(meta.experiment) is None:
        return base_url
    exp_id = configure_experiment_ui(meta.tracking_uri, meta.experiment, param_names=list(spec.search),
                                     description=spec.description or None)
    return runs_table_url(base_url, exp_id)


def remote_runs_page(meta: SweepMeta) -> str:
    """The trial-runs URL on the sweep's own tracking server (``http(s)://``), or ``""``.

    Never waits more than a few seconds: a server that is down only costs the link.
    """
    import os

    if not meta.tracking_uri.startswith(("http://", "https://")):
        return ""
    # MLflow's default retries would block for minutes on a dead server
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    try:
        return mlflow_runs_page(meta, base_url=meta.tracking_uri)
    except Exception:  # noqa: BLE001 - unreachable or refusing: print the bare server URL instead
        return ""


def serve_optuna_dashboard(meta: SweepMeta, *, port: int = 8080, open_browser: bool = False) -> None:
    """Serve ``optuna-dashboard`` for the sweep's study on 127.0.0.1 until Ctrl-C.

    Parameters
    ----------
    meta : SweepMeta
    port : int, default=8080
        TCP port; 0 picks a free one.
    open_browser : bool, default=False

    Raises
    ------
    SpecError
        optuna-dashboard is not installed, the study does not exist yet, or the port is taken.
    """
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise SpecError("htsweep ui --optuna needs optuna-dashboard: pip install 'htsweep[dashboard]' "
                        "(or pip install optuna-dashboard)") from None
    import optuna

    from htsweep.services.mlflow_server import check_port_free, free_port

    try:
        study_id = optuna.storages.get_storage(meta.optuna_storage).get_study_id_from_name(meta.study)
    except KeyError:
        raise SpecError(f"sweep {meta.name!r} has no Optuna study {meta.study!r} yet in "
                        f"{redact(meta.optuna_storage)}") from None
    try:
        check_port_free(port)
    except RuntimeError as exc:
        raise SpecError(str(exc)) from None
    port = port or free_port()
    url = f"http://{LOCALHOST}:{port}/dashboard/studies/{study_id}"
    print(f"Optuna dashboard for {meta.workdir}: {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        run_server(meta.optuna_storage, host=LOCALHOST, port=port)
    except KeyboardInterrupt:
        pass

