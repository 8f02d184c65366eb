"""Assay's builtin metrics as Hugging Face ``evaluate`` modules, one file per metric.

These files are meant to be loaded by path, ``evaluate.load(".../modules/accuracy.py")``
(see ``assay.metrics.evaluate_module_path``), not imported: each imports ``evaluate``.
"""
