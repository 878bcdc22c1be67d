"""The scan pipeline: roots -> records -> fingerprints -> pairs -> groups -> ScanReport (docs/architecture.md).

Imports nothing from the packages built on it (check, dedup, formats, probing, cli): checked by import-linter.
"""
