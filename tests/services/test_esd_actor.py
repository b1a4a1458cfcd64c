"""The shared ESD actor on a real local Ray: correctness under concurrency, batching, faults.

Reference values come from in-process ``analysis.analyze_layers`` on the same matrices.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

ray = pytest.importorskip("ray")
mlflow = pytest.importorskip("mlflow")

from htsweep.analysis.analyze import MONITOR_PRECISION, analyze_layers  # noqa: E402
from htsweep.services.esd_actor import (  # noqa: E402
    ActorAnalyzer,
    LayerPayload,
    analyze_payloads,
    get_esd_service,
    shutdown_esd_service,
)
from htsweep.services.tracking import TrackingConfig  # noqa: E402
from htsweep.sweeps.trial_logger import MlflowTrialLogger  # noqa: E402
from htsweep.trainers.callbacks import Callback, MetricsHistory  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import Trainer  # noqa: E402

# Metric columns compared with the in-process reference.
NUMERIC = ("alpha", "alpha_hill", "D", "xmin", "lambda_max", "lambda_plus", "stable_rank", "mp_soft_rank",
           "n_spikes", "log_spectral_norm", "alpha_weighted")


@pytest.fixture()
def service(ray_local):
    """A fresh actor in a namespace of its own (half a CPU: the session Ray has 2); killed after."""
    name, namespace = "esd", f"test-{uuid.uuid4().hex[:8]}"
    handle = get_esd_service(name, namespace=namespace, num_cpus=0.5, batch_window_s=0.3)
    ray.get(handle.ping.remote(), timeout=120)
    yield handle, name, namespace
    shutdown_esd_service(name, namespace=namespace)


def _assert_rows_match(rows, reference):
    assert [r["name"] for r in rows] == [r["name"] for r in reference]
    for got, want in zip(rows, reference, strict=True):
        assert got["phase"] == want["phase"] and got["kind"] == want["kind"]
        # Same float64 eigvalsh on the same CPU (MONITOR_PRECISION); batched vs unbatched may differ in the
        # last bits.
        assert_allclose(got["eigs"], want["eigs"], rtol=1e-10, atol=1e-12)
        for key in NUMERIC:
            assert_allclose(got[key], want[key], rtol=1e-8, equal_nan=True, err_msg=f"{want['name']}.{key}")


@pytest.mark.integration
def test_two_concurrent_callers_get_correct_metrics_batched_together(service, layer_set):
    handle, _, _ = service
    callers = {
        "a": layer_set(1, [(200, 100), (200, 100), (150, 50), (200, 100)], prefix="a"),
        "b": layer_set(2, [(200, 100), (80, 40), (200, 100)], prefix="b"),
    }
    analyzer = ActorAnalyzer(handle, fallback=False)
    barrier = threading.Barrier(2)

    def call(key):
        barrier.wait()
        return analyzer(callers[key], step=7)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(callers, pool.map(call, callers), strict=True))
    for key, layers in callers.items():
        _assert_rows_match(results[key], analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
    stats = ray.get(handle.stats.remote())
    assert stats["requests"] == 2 and stats["matrices"] == 7 and stats["errors"] == 0
    # Both requests landed in one batch (the 0.3 s window): larger than either request alone.
    assert stats["batch_size_max"] == 7 and stats["batches"] == 1
    assert stats["queue_depth"] == 0 and stats["time_per_matrix_s"] > 0
    assert analyzer.stats() == {"calls": 2, "retries": 0, "fallbacks": 0}


@pytest.mark.integration
def test_get_or_create_by_name_and_bad_layers_fail_only_their_caller(service, layer_set):
    handle, name, namespace = service
    again = get_esd_service(name, namespace=namespace)
    assert ray.get(again.ping.remote()) == ray.get(handle.ping.remote())  # same actor, not a new one
    by_name = ActorAnalyzer.by_name(name, namespace=namespace, fallback=False)
    good = layer_set(3, [(60, 30)], prefix="ok")
    bad = [type(good[0]).from_tensor("bad", "linear", torch.full((60, 30), float("nan")))]
    with ThreadPoolExecutor(2) as pool:
        fut_bad = pool.submit(by_name, bad, 1)
        fut_good = pool.submit(by_name, good, 1)
        with pytest.raises(ValueError, match="NaN"):
            fut_bad.result()
        _assert_rows_match(fut_good.result(), analyze_layers(good, device="cpu", precision=MONITOR_PRECISION))


class _KillActor(Callback):
    """Kills the actor (Ray restarts it) right after a given training step."""

    def __init__(self, handle, at_step):
        self.handle, self.at_step, self.pid = handle, at_step, None

    def on_train_step_end(self, trainer, model, step, loss):
        if step == self.at_step:
            self.pid = ray.get(self.handle.ping.remote())
            ray.kill(self.handle, no_restart=False)


@pytest.mark.integration
def test_killing_the_actor_mid_training_loses_no_monitoring_step(service, tiny_train_config, tmp_path,
                                                                 sqlite_uri):
    """A trial monitored by the shared actor and logged to MLflow; the actor is killed at step 12."""
    handle, _, _ = service
    analyzer = ActorAnalyzer(handle, retries=20, backoff=0.25, max_backoff=1.0, fallback=False)
    killer, history = _KillActor(handle, at_step=12), MetricsHistory()
    logger = MlflowTrialLogger(TrackingConfig(sqlite_uri, experiment="kill", buffer_dir=str(tmp_path / "buf")),
                               trial_id="trial_k")
    trainer = Trainer(tiny_train_config(steps=30, spectral_every=5, eval_every=0),
                      callbacks=[SpectralMonitor(analyzer), killer, history, logger])
    trainer.fit()
    monitored = [r["step"] for r in history.history if np.isfinite(r.get("alpha_mean", np.nan))]
    assert monitored == [5, 10, 15, 20, 25, 30]
    client = mlflow.MlflowClient(sqlite_uri)
    assert [m.step for m in client.get_metric_history(logger.run_id, "alpha_mean")] == monitored
    assert {a.path for a in client.list_artifacts(logger.run_id, "esd")} >= {f"esd/step_{s}.npz" for s in monitored}
    after = ray.get(handle.stats.remote())
    assert after["restarted"] and after["pid"] != killer.pid  # served by the restarted actor
    assert analyzer.n_fallbacks == 0
    # The restarted actor's answer equals in-process analysis of the final weights.
    final = SpectralMonitor().extract(trainer.model)
    _assert_rows_match(trainer.spectral.rows, analyze_layers(final, device="cpu", precision=MONITOR_PRECISION))


def _wait_unregistered(name, namespace, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            return
        time.sleep(0.05)
    raise AssertionError(f"actor {namespace}/{name} still registered after {timeout} s")


@pytest.mark.integration
def test_dead_actor_falls_back_to_in_process(service, layer_set):
    handle, name, namespace = service
    assert shutdown_esd_service(name, namespace=namespace)  # gone for good: no restart
    _wait_unregistered(name, namespace)
    analyzer = ActorAnalyzer(handle, retries=2, backoff=2.0, name=name, namespace=namespace)
    layers = layer_set(4, [(90, 45), (90, 45)], prefix="f")
    t0 = time.monotonic()
    _assert_rows_match(analyzer(layers, step=3), analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
    # Died, and its name is gone: no backoff now, and none on later calls either.
    assert analyzer.gone and analyzer.stats() == {"calls": 1, "retries": 0, "fallbacks": 1}
    _assert_rows_match(analyzer(layers, step=4), analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
    assert analyzer.stats() == {"calls": 2, "retries": 0, "fallbacks": 2}
    assert time.monotonic() - t0 < 2.0  # one backoff step would already take 2 s
    with pytest.raises(ray.exceptions.RayActorError):
        ActorAnalyzer(handle, retries=0, fallback=False)(layers, step=4)
    assert not shutdown_esd_service(name, namespace=namespace)


def test_service_body_batches_under_a_bounded_queue_without_ray(layer_set):
    """The actor's class used directly: a queue of 2 and batches of 2 still answer every layer."""
    import asyncio

    from htsweep.services.esd_actor import ESDService

    svc = ESDService(device="cpu", max_batch=2, max_queue=2, batch_window_s=0.0)
    layers = layer_set(5, [(50, 25)] * 5, prefix="q")

    async def both():
        return await asyncio.gather(svc.analyze(layers[:3]), svc.analyze(layers[3:]))

    first, second = asyncio.run(both())
    _assert_rows_match(first + second, analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
    stats = svc.stats()
    assert stats["matrices"] == 5 and stats["batch_size_max"] == 2 and stats["queue_depth_max"] <= 2
    with pytest.raises(ValueError, match="max_batch and max_queue must be >= 1"):
        ESDService(max_batch=0)


def test_analyze_payloads_is_analyze_layers_on_payloads(layer_set):
    layers = layer_set(7, [(80, 40), (60, 30), (80, 40)], prefix="p")
    rows = analyze_payloads([LayerPayload.from_layer(layer) for layer in layers], device="cpu")
    _assert_rows_match(rows, analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))


# -- faults: the actor's process killed, the actor killed for good, frozen, pending ----------------------------
def _policy(**kw):
    from htsweep.services.esd_actor import CallPolicy

    return CallPolicy(**{"min_timeout": 1.0, "first_timeout": 20.0, "ready_timeout": 1.0, "probe_interval": 1.0,
                         **kw})


def _wait_pid_changed(handle, old_pid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = ray.get(handle.ping.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            time.sleep(0.2)
            continue
        if pid != old_pid:
            return pid
        time.sleep(0.2)
    raise AssertionError(f"the actor did not come back within {timeout} s")


@pytest.mark.integration
def test_actor_process_sigkill_opens_the_breaker_then_the_restarted_actor_serves_again(service, layer_set):
    """OS-level SIGKILL of the actor's process: no backoff sleeps, in-process at once, back after a probe."""
    import os
    import signal

    handle, name, namespace = service
    layers = layer_set(11, [(90, 45), (64, 32)], prefix="k")
    want = analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION)
    first = ActorAnalyzer.by_name(name, namespace=namespace, policy=_policy(probe_interval=4.0))
    _assert_rows_match(first(layers, step=1), want)
    assert first.stats() == {"calls": 1, "retries": 0, "fallbacks": 0} and first.breaker.ready
    pid = ray.get(handle.ping.remote())
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    _assert_rows_match(first(layers, step=2), want)  # the dead actor's call fails; answered in-process
    # A trial started later in this process shares the breaker: in-process at once, no probe.
    later = ActorAnalyzer.by_name(name, namespace=namespace)
    assert later.breaker is first.breaker and later.breaker.is_open
    _assert_rows_match(later(layers, step=3), want)
    assert time.monotonic() - t0 < 5.0, "a failed call must not sleep through retries"
    assert (first.stats()["fallbacks"], later.stats()["fallbacks"], first.n_retries) == (1, 1, 0)
    new_pid = _wait_pid_changed(handle, pid)
    time.sleep(first.breaker.policy.probe_interval)
    _assert_rows_match(later(layers, step=4), want)  # the probe finds the restarted actor
    assert not later.breaker.is_open and later.stats() == {"calls": 2, "retries": 0, "fallbacks": 1}
    stats = ray.get(handle.stats.remote())
    assert stats["pid"] == new_pid and stats["restarted"] and stats["requests"] == 1


@pytest.mark.integration
def test_frozen_actor_costs_one_bounded_timeout_then_callers_go_in_process(service, layer_set):
    """SIGSTOP (a hung actor: it accepts calls, never answers): the timeout comes from the measured service time."""
    import os
    import signal

    handle, name, namespace = service
    layers = layer_set(12, [(80, 40), (80, 40)], prefix="h")
    want = analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION)
    analyzer = ActorAnalyzer.by_name(name, namespace=namespace, policy=_policy(min_timeout=2.0, probe_interval=2.0))
    for step in range(3):  # measured service time: a few calls
        _assert_rows_match(analyzer(layers, step=step), want)
    limit = analyzer.breaker.timeout(len(layers))
    # The caller measures the actor's own service time plus transport: the limit is at least 10x it.
    service_s = ray.get(handle.stats.remote())["latency_per_matrix_max_s"] * len(layers)
    assert service_s > 0 and limit >= min(600.0, 10.0 * service_s)
    assert 2.0 <= limit < 60.0, limit  # derived from what was measured, not the 600 s of old
    pid = ray.get(handle.ping.remote())
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        _assert_rows_match(analyzer(layers, step=10), want)
        took = time.monotonic() - t0
        assert limit * 0.9 <= took < limit + 10.0, (took, limit)
        assert analyzer.breaker.is_open and "no answer within" in analyzer.breaker.reason
        t1 = time.monotonic()
        _assert_rows_match(ActorAnalyzer.by_name(name, namespace=namespace)(layers, step=11), want)
        assert time.monotonic() - t1 < 2.0  # shared breaker: the next caller does not wait again
        time.sleep(2.0)
        t2 = time.monotonic()
        _assert_rows_match(analyzer(layers, step=12), want)  # re-probe: fails fast (ready_timeout 1 s)
        assert time.monotonic() - t2 < 1.0 + 3.0 and analyzer.breaker.failures == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(4.1)  # the doubled probe interval
    _assert_rows_match(analyzer(layers, step=13), want)
    assert not analyzer.breaker.is_open
    assert analyzer.stats() == {"calls": 6, "retries": 0, "fallbacks": 2}


@pytest.mark.integration
def test_killed_for_good_actor_costs_later_trials_nothing(service, layer_set):
    """``ray.kill(no_restart=True)``: trials that start afterwards (by name) analyze in-process at once."""
    handle, name, namespace = service
    layers = layer_set(13, [(70, 35)], prefix="g")
    ray.kill(handle, no_restart=True)
    _wait_unregistered(name, namespace)
    t0 = time.monotonic()
    for step in range(3):  # three trials, each starting with a fresh analyzer
        analyzer = ActorAnalyzer.by_name(name, namespace=namespace)
        _assert_rows_match(analyzer(layers, step=step), analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
        assert analyzer.gone and analyzer.stats() == {"calls": 1, "retries": 0, "fallbacks": 1}
    assert time.monotonic() - t0 < 3.0  # the old code slept ~11.5 s of backoff per trial


@pytest.mark.integration
def test_pending_actor_is_reported_not_ready_and_callers_do_not_wait(ray_local, layer_set):
    """An actor whose resources do not exist stays pending: readiness says so, calls go in-process."""
    from htsweep.services.esd_actor import wait_ready

    name, namespace = "esd", f"test-{uuid.uuid4().hex[:8]}"
    handle = get_esd_service(name, namespace=namespace, num_cpus=64)  # the session Ray has 2
    try:
        t0 = time.monotonic()
        assert wait_ready(handle, timeout=1.0) is None
        layers = layer_set(14, [(60, 30)], prefix="p")
        analyzer = ActorAnalyzer(handle, name=name, namespace=namespace, policy=_policy())
        _assert_rows_match(analyzer(layers, step=1), analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
        _assert_rows_match(analyzer(layers, step=2), analyze_layers(layers, device="cpu", precision=MONITOR_PRECISION))
        assert analyzer.stats() == {"calls": 2, "retries": 0, "fallbacks": 2} and not analyzer.gone
        assert "no answer to a probe within 1 s" in analyzer.breaker.reason
        assert time.monotonic() - t0 < 6.0
    finally:
        shutdown_esd_service(name, namespace=namespace)
