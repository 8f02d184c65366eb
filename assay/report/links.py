"""Where a run's report can be opened: a URL when the artifact root is published, else a path.

``ASSAY_ARTIFACTS_URL`` names the URL at which the artifact root is served (a static web
server, a bucket's website endpoint, a CDN): ``https://reports.example.com/assay`` serving
``<root>/``. With it, the Prefect UI gets a link artifact to each report and the dashboard
links to each report by URL; without it, the dashboard links by relative path (publish the
dashboard folder beside the run folders) and the Prefect UI shows the report's location as text.
"""

from __future__ import annotations

import os

import assay.store
from assay.store import RunFolder

ENV = "ASSAY_ARTIFACTS_URL"


def base_url(explicit: str | None = None) -> str | None:
    url = explicit if explicit is not None else os.environ.get(ENV)
    return url.rstrip("/") if url else None


def report_url(rf: RunFolder, base: str | None = None) -> str | None:
    """The report's URL under the published artifact root, or None when the root is not published."""
    b = base_url(base)
    if not b:
        return None
    return "/".join([b, rf.pipeline, rf.as_of, rf.run_id, assay.store.REPORT])


def report_href(rf: RunFolder, page_dir: str, base: str | None = None) -> str:
    """A link from a page in ``page_dir`` to the run's report: its URL, a relative path (local
    root), or the object's own URL (remote root without a published URL)."""
    url = report_url(rf, base)
    if url:
        return url
    if rf.store.remote:
        return rf.path(assay.store.REPORT)
    return os.path.relpath(rf.path(assay.store.REPORT), os.path.abspath(page_dir)).replace(os.sep, "/")
