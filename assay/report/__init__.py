"""The report: summary.md and report.html of a run, the compare page of two runs, the dashboard
of an artifact root, and the number formatting they share.

``assay.report.format`` is light (the stages' log lines use it); the rest needs pandas and is
imported on first use.
"""

__all__ = ["breakeven_lines", "build_report", "decision_lines", "decisions", "headline"]


def __getattr__(name):
    if name in __all__:
        # lazy: keeps pandas out of start-up (see above)
        from assay.report import summary

        return getattr(summary, name)
    raise AttributeError(name)
