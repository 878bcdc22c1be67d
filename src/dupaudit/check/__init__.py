"""The pre-commit / CI gate: `check` (runner) and the accepted findings (baseline), built on engine/."""
