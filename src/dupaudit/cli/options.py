"""The scan options that scan, dedup and probe share, and how their flags meet the config (config.py).

Every option defaults to None, "not given", so that the environment (DUPAUDIT_*), then `[tool.dupaudit]` in
pyproject.toml or `.dupaudit.toml`, then Settings' defaults decide: flag > env > file > default, as in check.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from ..config import AuditConfig, load_config
from ..engine.model import UNVERIFIED_THRESHOLD, Settings

_DEFAULTS = Settings()


AGAINST = typer.Option(
    [], "--against", help="An evaluation folder to check for leakage (repeatable). (config: against)"
)
METHOD = typer.Option(
    None,
    "--method",
    help="Perceptual hash (imagededup's definitions), or cnn: semantic near duplicates from CNN embeddings "
    f"(needs --model or DUPAUDIT_CNN_MODEL; see README). (config: method; default {_DEFAULTS.method})",
)
MODEL = typer.Option(
    None,
    "--model",
    metavar="PATH",
    help="--method cnn: a local torchvision mobilenet_v3_small state_dict (.pth); else $DUPAUDIT_CNN_MODEL, else "
    "the torch hub cache. Nothing is downloaded. (config: model)",
)
THRESHOLD = typer.Option(
    None,
    "--threshold",
    min=0,
    max=64,
    help=f"Hash (Hamming) radius. With verification (the default) it only proposes candidates, as the "
    f"--neighbours do, and --min-similarity decides, so copies beyond it are found too (default "
    f"{_DEFAULTS.threshold}); with --no-verify the pairs within it are the near duplicates (default "
    f"{UNVERIFIED_THRESHOLD}). (config: threshold)",
)
FLIPS = typer.Option(
    None,
    "--flips/--no-flips",
    help="Also match mirrored copies (left-right; with --rotations every rotation of the mirror, so vertical flips "
    "too). (config: flips)",
)
ROTATIONS = typer.Option(
    None,
    "--rotations/--no-rotations",
    help="Also match copies rotated by 90, 180 and 270 degrees (--method phash; several times the search time, "
    "see README). (config: rotations)",
)
VERIFY = typer.Option(
    None,
    "--verify/--no-verify",
    help="Verify near candidates on thumbnails (the cascade; default); --no-verify: pHash only. (config: verify)",
)
MIN_SIMILARITY = typer.Option(
    None,
    "--min-similarity",
    min=-1.0,
    max=1.0,
    help=f"Verification score a near pair must reach (default {_DEFAULTS.min_similarity}); with --method cnn, the "
    "cosine similarity of the embeddings. (config: min_similarity)",
)
NEIGHBOURS = typer.Option(
    None,
    "--neighbours",
    min=0,
    help=f"Nearest neighbours per image proposed as candidates (default {_DEFAULTS.neighbours}). (config: neighbours)",
)
FAST_DECODE = typer.Option(
    None,
    "--fast-decode/--no-fast-decode",
    help="Decode JPEGs at reduced scale (several times faster on photos; the hashes are then no longer "
    "imagededup's: see docs/performance.md). (config: fast_decode)",
)
SPLIT = typer.Option(
    [],
    "--split",
    metavar="NAME=FOLDER",
    help="Name a split folder (relative to ROOT; repeatable): only these are scanned. train/training is the training "
    "split, unlabeled/extra an unlabelled pool, any other name an evaluation split. (config: splits)",
)
LABEL_DEPTH = typer.Option(
    None,
    "--label-depth",
    min=1,
    help="The folder level (below a split) whose names are the labels (default: detected, 1). (config: label_depth)",
)
LABEL_FROM = typer.Option(
    None,
    "--label-from",
    metavar="PATTERN",
    help="Labels from a folder pattern, e.g. '{split}/{_}/{label}/*' (README \"Layouts\"). (config: label_from)",
)
JOBS = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes (default: all cores). (config: jobs)")
CACHE = typer.Option(
    None,
    "--cache",
    help="Fingerprint cache (default ~/.cache/dupaudit/fingerprints.sqlite). (config: cache; env DUPAUDIT_CACHE)",
)
NO_CACHE = typer.Option(False, "--no-cache", help="Neither read nor write the fingerprint cache.")
CONFIG = typer.Option(
    None,
    "--config",
    help="Config file (default: the nearest .dupaudit.toml, or pyproject.toml with \\[tool.dupaudit]).",
)


def _text(value: object) -> str | None:
    return None if value is None else str(value.value if isinstance(value, Enum) else value)


def scan_config(
    *,
    root: Path | str | None = None,  # a folder, or another source's path or URL (engine/sources)
    against: list[Path] | list[str] | None = None,
    method: Enum | str | None = None,
    model: Path | None = None,
    threshold: int | None = None,
    flips: bool | None = None,
    verify: bool | None = None,
    min_similarity: float | None = None,
    neighbours: int | None = None,
    fast_decode: bool | None = None,
    jobs: int | None = None,
    cache: Path | None = None,
    config_file: Path | None = None,
    split: list[str] | None = None,
    label_depth: int | None = None,
    label_from: str | None = None,
    rotations: bool | None = None,
) -> AuditConfig:
    """The config with these flags on top (None: not given)."""
    return load_config(
        {
            "root": _text(root),
            "against": tuple(str(a) for a in against) if against else None,
            "method": _text(method),
            "model": _text(model),
            "threshold": threshold,
            "flips": flips,
            "verify": verify,
            "min_similarity": min_similarity,
            "neighbours": neighbours,
            "fast_decode": fast_decode,
            "rotations": rotations,
            "jobs": jobs,
            "cache": _text(cache),
            "splits": list(split) if split else None,
            "label_depth": label_depth,
            "label_from": label_from,
        },
        config_file=config_file,
    )


def root_given(config: AuditConfig, root: Path | str | None) -> bool:
    """Whether a dataset folder was named: the argument, $DUPAUDIT_ROOT, or a config file (its root key, else
    the file's own folder, as check reads it)."""
    return root is not None or config.source is not None or bool(os.environ.get("DUPAUDIT_ROOT"))


def scan_parameters(config: AuditConfig, model: Path | None) -> dict[str, Any]:
    """engine.pipeline.scan's settings keywords; a --model flag is passed as given (so that it is refused with a
    hash method), a configured model only with method cnn."""
    parameters = config.scan_parameters()
    if model is not None:
        parameters["model"] = config.model
    return parameters
