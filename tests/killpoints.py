"""Kill the process (SIGKILL, as ``kill -9`` does) at a chosen point of a run, for the kill tests.

``arm(point)`` patches the artifact store so that the process dies while it writes a given
artifact: it leaves a half-written temporary file behind, as a real kill in the middle of a
write would, and never reaches the rename (an artifact written row group by row group dies
after its first row group). Imported only by the tests' child processes.
"""

import contextlib
import os
import signal

#: point -> (artifact name predicate, how many matching writes to let through first)
POINTS = {
    "load": (lambda name: name == "dataset.parquet", 0),
    "invoke": (lambda name: name.startswith("responses/part-live-"), 2),
    "score": (lambda name: name == "metrics.parquet", 0),
    "cost": (lambda name: name == "costs.parquet", 0),
    "report": (lambda name: name == "report.html", 0),
}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    from assay.store import RunFolder

    if point == "gate":  # the gate records its verdict in the manifest: die before that write lands
        from assay.runs import manifest

        update = manifest.update

        def dying_update(folder, stage=None, **changes):
            if "gates" in changes:
                _die()
            return update(folder, stage=stage, **changes)

        manifest.update = dying_update
        return
    match, skip = POINTS[point]
    seen = [0]
    write = RunFolder._write_bytes

    def dying_write(self, name, data):
        if match(name):
            seen[0] += 1
            if seen[0] > skip:
                with open(f"{self._loc(name)}.tmp-killed", "wb") as f:
                    f.write(data[: len(data) // 2])
                _die()
        return write(self, name, data)

    RunFolder._write_bytes = dying_write
    streamed = RunFolder.table_writer

    @contextlib.contextmanager
    def dying_table_writer(self, name, schema):
        """An artifact written row group by row group: die after its first row group."""
        with streamed(self, name, schema) as w:
            if match(name):
                seen[0] += 1
                if seen[0] > skip:

                    class Dying:
                        def write_table(self, table):
                            w.write_table(table)
                            _die()

                    yield Dying()
                    return
            yield w

    RunFolder.table_writer = dying_table_writer
