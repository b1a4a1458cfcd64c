"""What the sweep's session API costs a user's own loop, spectral monitoring off.

The same training loop (an MLP on scikit-learn digits through a ``DataLoader``, SGD, a test-set
evaluation every ``report_every`` steps) runs side by side in one process, alternating, in two
forms: plain, and calling ``session.report(metrics, step)`` at each evaluation on a real
``sweeps.session.TrialSession`` with the MLflow trial logger on a sqlite store (what a sweep's trial
gets; Ray Tune's own ``tune.report`` is a no-op outside a Tune run, and costs any trainable the same).
The overhead is measured directly, as the CPU time spent inside ``session.report`` over the plain
loop's CPU time, and as the ratio of whole-loop process CPU times (user + sys; medians, and the
median of adjacent pairs), which on a shared machine is noisier than the 2 % it checks. Target:
at most 2 %.

``python benchmarks/bench_session.py`` prints the numbers and writes
``benchmarks/results/bench_session.json``. Single-threaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "bench_session.json"


def _data() -> tuple[torch.utils.data.TensorDataset, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return torch.utils.data.TensorDataset(x[:1400], y[:1400]), x[1400:], y[1400:]


def run_loop(steps: int, report_every: int, width: int, report: Any) -> None:
    """The user's loop; ``report(metrics, step)`` at each evaluation (a no-op for the plain form)."""
    torch.manual_seed(0)
    train, x_test, y_test = _data()
    model = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    step = 0
    while step < steps:
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % report_every == 0:
                with torch.no_grad():
                    acc = (model(x_test).argmax(1) == y_test).float().mean().item()
                report({"test_acc": acc, "train_loss": loss.item()}, step)
            if step >= steps:
                return


def _session(workdir: Path, run: int) -> Any:
    from htsweep.services.tracking import TrackingConfig, init_store
    from htsweep.sweeps.session import TrialSession
    from htsweep.sweeps.spec import ObjectiveSpec
    from htsweep.sweeps.trainable import TuneReporter
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.monitor import InProcessAnalyzer, SpectralMonitor

    config = TrackingConfig.for_workdir(workdir, experiment="bench-session")
    init_store(config.tracking_uri)
    logger = MlflowTrialLogger(config, trial_id=f"t{run}", params={"lr": 0.05})
    objective = ObjectiveSpec(min_test_accuracy=0.5)
    session = TrialSession({"steps": 0}, objective=objective, trial_id=f"t{run}", trial_dir=workdir, device="cpu",
                           monitor=SpectralMonitor(InProcessAnalyzer(device="cpu")), logger=logger,
                           reporter=TuneReporter(objective, logger=logger, checkpoint=False))
    logger.on_fit_start(session.trainer_view, None)
    return session, logger


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--report-every", type=int, default=50)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # tune.report outside a Tune run says so each time

    cpu: dict[str, list[float]] = {"plain": [], "session": []}
    inside: list[float] = []  # CPU time spent inside session.report, per call
    wall: dict[str, list[float]] = {"plain": [], "session": []}
    with tempfile.TemporaryDirectory(prefix="bench-session-") as tmp:
        warm, warm_logger = _session(Path(tmp), -1)  # migrations, imports and first calls, outside the timing
        run_loop(2 * args.report_every, args.report_every, args.width, warm.report)
        run_loop(2 * args.report_every, args.report_every, args.width, lambda metrics, step: None)
        for run in range(args.repeats):
            for form in ("plain", "session") if run % 2 == 0 else ("session", "plain"):
                if form == "session":
                    session, logger = _session(Path(tmp), run)

                    def report(metrics: dict, step: int, session: Any = session) -> None:
                        t0 = time.process_time()
                        session.report(metrics, step)
                        inside.append(time.process_time() - t0)
                else:
                    report = lambda metrics, step: None  # noqa: E731 - the plain loop reports nowhere
                c0, w0 = time.process_time(), time.perf_counter()
                run_loop(args.steps, args.report_every, args.width, report)
                if form == "session":
                    session.finish()
                    logger.on_fit_end(session.trainer_view, None)
                cpu[form].append(time.process_time() - c0)
                wall[form].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    out = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": 1, "device": "cpu",
                    "note": "2-core box shared with other jobs; CPU time (user+sys) of this process"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": args.steps, "report_every": args.report_every, "width": args.width, "repeats": args.repeats,
        "cpu_s": cpu, "wall_s": wall,
        "ms_per_step_plain": 1000 * med["plain"] / args.steps,
        "overhead_pct": 100 * (med["session"] / med["plain"] - 1),
        # adjacent runs paired: less exposed to the load drifting over the whole benchmark
        "paired_overhead_pct": 100 * (statistics.median(s / p for s, p in zip(cpu["session"], cpu["plain"],
                                                                               strict=True)) - 1),
        # the direct measure: CPU time inside session.report over the plain loop's CPU time
        "report_cpu_ms": 1000 * statistics.median(inside),
        "report_share_pct": 100 * sum(inside) / args.repeats / med["plain"],
        "wall_overhead_pct": 100 * (statistics.median(wall["session"]) / statistics.median(wall["plain"]) - 1),
    }
    print(f"plain loop {out['ms_per_step_plain']:.2f} ms/step CPU; session API (report every {args.report_every} "
          f"steps, MLflow on sqlite): {out['report_cpu_ms']:.2f} ms CPU per report = {out['report_share_pct']:.2f} % "
          f"of the loop; whole-loop CPU time {out['overhead_pct']:+.2f} % (medians), "
          f"{out['paired_overhead_pct']:+.2f} % (paired), wall {out['wall_overhead_pct']:+.2f} %")
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
