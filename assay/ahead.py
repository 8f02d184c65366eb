"""Run an ``assay run``'s stages ahead of Prefect, in a forked child process.

Starting Prefect (importing it, creating the flow run) costs a few seconds of CPU that the
stages do not need. So ``assay run`` forks a child before it imports anything heavy: the child
imports the stage code while the parent reads the config and creates the run folder, and runs
load, invoke, score, cost and report as soon as the parent hands it the run. The parent imports
Prefect and starts the flow meanwhile; each of the flow's stage tasks waits for the child's
result for its stage and adopts it (``assay.run.adopt_or_run``). The flow run still shows one task
per stage with its outcome and error, and nothing is done twice. A child rather than a thread,
because a thread would fight Prefect's imports for the GIL.

Runs from the UI, a schedule or a backfill, and platforms without ``fork``, run the stages in
order inside the flow. This module imports nothing heavy at the top, so forking is cheap.
"""

import os

#: The stages the child runs, in order; the gate stays in the flow (it publishes and fails it).
STAGES = ("load", "invoke", "score", "cost", "report")


class Ahead:
    """The parent's handle on the child: hand it a run, or cancel it."""

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn

    @classmethod
    def fork(cls) -> "Ahead | None":
        """Fork the child now; None where ``fork`` is unavailable."""
        import multiprocessing

        try:
            mp = multiprocessing.get_context("fork")
        except ValueError:
            return None
        ours, theirs = mp.Pipe()
        proc = mp.Process(target=_child, args=(theirs,), name="assay-ahead", daemon=True)
        proc.start()
        theirs.close()
        return cls(proc, ours)

    def cancel(self) -> None:
        """Nothing to run (the config was invalid, say): the child sees the pipe close and exits."""
        self.conn.close()
        self.proc.join(timeout=10)

    def hand_over(self, ctx) -> None:
        """Give the child the run; register one job per stage for the flow's tasks to adopt."""
        import threading

        from assay import run as R

        jobs = {stage: R.Prefetched() for stage in STAGES}
        url = ctx.folder.url
        for stage, job in jobs.items():
            R.PREFETCH[(url, stage)] = job
        self.conn.send((ctx, ctx._cfg))
        threading.Thread(target=self._relay, args=(jobs,), name="assay-ahead-relay", daemon=True).start()

    def _relay(self, jobs: dict) -> None:
        from assay import run as R

        try:
            while True:
                kind, stage, payload = self.conn.recv()
                if kind == "progress":
                    jobs["invoke"].on_progress(*payload)
                    for hook in R.PROGRESS_HOOKS:
                        hook(*payload)
                elif kind == "done":
                    jobs[stage].future.set_result(payload)
                else:  # an error: this stage and every later one fail with it
                    for later in STAGES[STAGES.index(stage):]:
                        if not jobs[later].future.done():
                            jobs[later].future.set_exception(payload)
        except (EOFError, OSError):
            self.proc.join()
            lost = R.RunFailed(f"the process running the stages ended unexpectedly (exit code {self.proc.exitcode}); "
                               "run the same command again to resume")
            for job in jobs.values():
                if not job.future.done():
                    job.future.set_exception(lost)


def _warm_later_stages(ctx) -> None:
    """Import what score, cost and report need while the models are being called."""
    try:
        ctx.cfg.metric_specs()  # builds the config's deferred validators
        import pandas  # noqa: F401

        import assay.costing  # noqa: F401
        import assay.metrics  # noqa: F401
        import assay.report  # noqa: F401
        import assay.scoring  # noqa: F401
    except Exception:  # the stage itself will raise a proper error
        pass


def _child(conn) -> None:
    import pickle
    import signal
    import threading

    try:  # die with the parent rather than go on calling models for nobody
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    # what every run needs, imported while the parent reads the config
    from assay import run as R
    import assay.cache  # noqa: F401
    import assay.dataset  # noqa: F401
    import assay.invoke  # noqa: F401
    import assay.pricing  # noqa: F401
    import assay.prompting  # noqa: F401
    import assay.providers  # noqa: F401

    try:
        import aiohttp  # noqa: F401  (the openai provider's client)
    except ImportError:
        pass
    try:
        ctx, loaded = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    ctx._cfg = loaded
    R.PROGRESS_HOOKS.clear()

    def progress(*a):
        conn.send(("progress", "invoke", a))

    run = {
        "load": lambda: R.load_stage(ctx),
        "invoke": lambda: R.invoke_stage(ctx, on_progress=progress),
        "score": lambda: R.score_stage(ctx),
        "cost": lambda: R.cost_stage(ctx),
        "report": lambda: R.report_stage(ctx),
    }
    for stage in STAGES:
        if stage == "invoke":
            threading.Thread(target=_warm_later_stages, args=(ctx,), daemon=True).start()
        try:
            conn.send(("done", stage, run[stage]()))
        except BaseException as e:
            try:
                pickle.loads(pickle.dumps(e))
            except Exception:
                e = R.RunFailed(f"{type(e).__name__}: {e}")
            conn.send(("error", stage, e))
            break
    conn.close()
    os._exit(0)  # skip the atexit handlers inherited from the parent
