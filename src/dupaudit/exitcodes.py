"""The exit codes of every dupaudit command, in one place (README "Exit codes" names them).

Plain integers so that the core (check/runner.py's verdict) and the command layer (cli/) share them; a crash
never exits EXIT_FINDINGS, which a CI gate reads as "the data failed".
"""

EXIT_OK = 0  # ran, and nothing failed the gate
EXIT_FINDINGS = 1  # findings failed a --fail-on rule (or check's new findings)
EXIT_USAGE = 2  # bad usage, config or unusable input: a one-line message, never a traceback
EXIT_BASELINE_REWRITTEN = 3  # check dropped gone files from the baseline: re-stage it
EXIT_INTERNAL = 123  # a bug in dupaudit
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
