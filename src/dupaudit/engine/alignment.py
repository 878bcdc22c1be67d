"""Two lists of names in the same order that differ in a few places (two readings of a folder; a scan's records
and the stored state's rows), aligned without a dict of every name: the runs they agree on are found by comparing
slices (C-level string comparisons), each difference by a short look ahead."""

from __future__ import annotations

from collections.abc import Sequence

Run = tuple[int, int, int]  # (i, j, width): new[i:i + width] == old[j:j + width]


def agreeing_runs(
    old: Sequence[str], new: Sequence[str], *, step: int, lookahead: Sequence[int], differences: int
) -> list[Run] | None:
    """The runs where `new` agrees with `old`, in order, adjacent runs merged. `step`: names compared at once while
    they agree; `lookahead`: how far past a difference the name where they agree again is looked for, each reach
    in turn; `differences`: how many differences are walked before giving up (None: the caller's dict is then
    cheaper). A difference not found within the reach matches neither name."""
    runs: list[Run] = []
    i = j = 0
    budget = differences
    while i < len(new) and j < len(old):
        width = min(step, len(new) - i, len(old) - j)
        if new[i : i + width] != old[j : j + width]:
            agree, differ = 0, width  # new[i:i+agree] == old[j:j+agree]; they differ within the first `differ`
            while differ - agree > 1:
                middle = (agree + differ) // 2
                if new[i : i + middle] == old[j : j + middle]:
                    agree = middle
                else:
                    differ = middle
            width = agree
        if width:
            if runs and runs[-1][0] + runs[-1][2] == i and runs[-1][1] + runs[-1][2] == j:
                runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + width)
            else:
                runs.append((i, j, width))
            i, j = i + width, j + width
        if i == len(new) or j == len(old) or new[i] == old[j]:
            continue
        budget -= 1
        if budget < 0:
            return None
        i, j = _resume(old, new, i, j, lookahead)
    return runs


def _resume(old: Sequence[str], new: Sequence[str], i: int, j: int, lookahead: Sequence[int]) -> tuple[int, int]:
    """Where two lists that differ at new[i], old[j] agree again: past old names removed, past new names added,
    or past both (a rename, or a difference too long to look across: then neither is matched)."""
    for reach in lookahead:
        try:  # old names removed before the next new one
            return i, old.index(new[i], j, j + reach)
        except ValueError:
            pass
        try:  # new names added before the next old one
            return new.index(old[j], i, i + reach), j
        except ValueError:
            pass
    return i + 1, j + 1
