"""Assay's builtin metrics as Hugging Face ``evaluate`` modules, one file per metric.

These files are meant to be loaded by path, ``evaluate.load(".../modules/accuracy.py")``
(see ``assay.metrics.evaluate_module_path``), not imported: each imports ``evaluate``.
They are generated from ``assay.metrics.builtin`` by ``python -m assay.metrics.modules._generate``
(``--check`` lists the stale ones); edit the metric classes, not the files.
"""
