"""Run folders and their owners: a live run is never resumed by another process; a killed one is."""

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date

from assay.runs import start_run
from tests.helpers import write_replay_inputs

DAY = date(2026, 11, 1)

HOLD = textwrap.dedent("""
    import sys, time
    from datetime import date
    from assay.runs import start_run
    ctx = start_run(sys.argv[1], "p", date(2026, 11, 1))
    print(ctx.run_id, flush=True)
    time.sleep(600)
""")


def _holder(cfg: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, cfg], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    return proc, proc.stdout.readline().strip()


def test_a_live_run_is_not_resumed_by_another_process_and_a_killed_one_is(tmp_path):
    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "y"])
    proc, live = _holder(cfg)
    try:
        assert live
        # the same request while that process lives: a run folder of its own, never the live one
        other = start_run(cfg, "p", DAY)
        assert other.run_id != live and not other.resumed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # with `other` finished, the killed process's folder is the only unfinished one: it resumes
    from assay.runs import finish

    finish(other)
    again = start_run(cfg, "p", DAY)
    assert again.resumed and again.run_id == live
