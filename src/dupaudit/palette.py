"""The one colour scheme shared by the HTML report and the probe's matplotlib plots.

Colours are from the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies),
as hex strings that both CSS and matplotlib accept. Look colours up with the helpers below so that an
unknown kind or arm gets a neutral grey instead of a KeyError.
"""

from __future__ import annotations

# Group kinds (model.KINDS): exact ⊂ pixel ⊂ near.
KIND_COLORS: dict[str, str] = {
    "exact": "#D55E00",  # vermillion: byte-identical copies, the clearest waste
    "pixel": "#E69F00",  # orange: same pixels, another encoding
    "near": "#0072B2",  # blue: similar pixels within the Hamming radius
}

# Probe arms (issue 5): train as-is, with duplicates removed, and with as many random images removed.
ARM_COLORS: dict[str, str] = {
    "as-is": "#555555",  # dark grey: the baseline
    "deduplicated": "#009E73",  # bluish green: the treatment
    "random-removed": "#CC79A7",  # reddish purple: the control (same size as deduplicated)
}

# Findings that a user must look at first.
HIGHLIGHT: dict[str, str] = {
    "label_conflict": "#D55E00",  # vermillion
    "leakage": "#7B3294",  # purple
    "skew_driver": "#D55E00",  # classes whose inflation drives the skew
    "kept": "#009E73",  # the member a dedup keeps
}

# Neutral colours for axes, grids, bars that are not highlighted, and the unknown.
NEUTRAL: dict[str, str] = {
    "text": "#222222",
    "muted": "#6B6B6B",
    "grid": "#DDDDDD",
    "bar": "#56B4E9",  # sky blue: an ordinary bar
    "background": "#FFFFFF",
}
UNKNOWN = "#999999"


def kind_color(kind: str) -> str:
    """The colour of a group kind ('exact', 'pixel', 'near'); grey for anything else."""
    return KIND_COLORS.get(kind, UNKNOWN)


def arm_color(arm: str) -> str:
    """The colour of a probe arm ('as-is', 'deduplicated', 'random-removed'); grey for anything else."""
    return ARM_COLORS.get(arm, UNKNOWN)
