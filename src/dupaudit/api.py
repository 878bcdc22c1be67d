"""The public Python API: `scan` and `probe` with the arguments a user thinks in (sources, a cache, settings).

The engine's own entry points (engine.pipeline.scan, probing.run_probe) take the cache as a path and a switch;
these translate, and are what `dupaudit` exports. They never print or exit: errors are DupauditError
subclasses whose messages name the parameters (`model goes with method='cnn'`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .engine.model import ScanReport, Settings
from .engine.progress import ProgressSink
from .errors import ParameterError

if TYPE_CHECKING:  # the probe's types load torch-free, but only on use (probing is an optional extra's package)
    from .probing import ProbeReport, ProbeSettings

PathLike = str | os.PathLike
# cache=None: the default location (~/.cache/dupaudit/fingerprints.sqlite, $DUPAUDIT_CACHE, $XDG_CACHE_HOME);
# a path: that file; False: neither read nor write a cache.
Cache = PathLike | bool | None


def _cache_arguments(cache: Cache) -> tuple[PathLike | None, bool]:
    """(cache_path, use_cache) as the engine takes them."""
    if cache is None or cache is True:
        return None, True
    if cache is False:
        return None, False
    if isinstance(cache, (str, os.PathLike)):
        return cache, True
    raise ParameterError(f"{{cache}} must be a path, True/None (the default location) or False, not {cache!r}")


def scan(
    source: PathLike,
    *more_sources: PathLike | Sequence[PathLike],
    against: Sequence[PathLike] = (),
    cache: Cache = None,
    settings: Settings | None = None,
    method: str | None = None,
    threshold: int | None = None,
    flips: bool | None = None,
    verify: bool | None = None,
    neighbours: int | None = None,
    min_similarity: float | None = None,
    fast_decode: bool | None = None,
    model: PathLike | None = None,
    jobs: int | None = None,
    rotations: bool | None = None,
    progress: ProgressSink | None = None,
    cache_path: PathLike | None = None,
    use_cache: bool | None = None,
    splits: Mapping[str, str] | Sequence[str] | None = None,
    label_depth: int | None = None,
    label_from: str | None = None,
    verify_content: bool = False,
) -> ScanReport:
    """Scan a dataset folder, and evaluation folders (`more_sources`, or `against=` as before), for duplicates.

    The scan is described either by `settings` (a Settings, e.g. a saved report's) or by the single settings
    (method, threshold, ...; None: the default of Settings.resolve), not both. `model` is the weights file of
    method='cnn'; `jobs` the decoding processes (default: all cores). `splits` ({NAME: FOLDER}), `label_depth` and
    `label_from` override layout detection (README "Layouts"). Earlier spellings still work: a list of
    evaluation folders as the second argument, `cache_path=` and `use_cache=False`. `verify_content`: read every
    file and compare its bytes with the cache's (an edit that kept size and mtime is otherwise not seen)."""
    singles = {
        "method": method,
        "threshold": threshold,
        "flips": flips,
        "verify": verify,
        "neighbours": neighbours,
        "min_similarity": min_similarity,
        "fast_decode": fast_decode,
        "rotations": rotations,
    }
    given: dict[str, Any] = {name: value for name, value in singles.items() if value is not None}
    if settings is not None:
        if given:
            raise ParameterError(f"give {{settings}} or {', '.join(f'{{{n}}}' for n in given)}, not both")
        given = dataclasses.asdict(settings)
    if cache_path is not None or use_cache is not None:
        if cache is not None:
            raise ParameterError("give {cache} alone: it replaces {cache_path} and {use_cache}")
        cache = False if use_cache is False else cache_path
    folders = [f for item in more_sources for f in (item if isinstance(item, (list, tuple)) else (item,))]
    cache_path, use_cache = _cache_arguments(cache)
    from .engine.pipeline import scan as scan_folders

    return scan_folders(
        source,
        [*folders, *against],
        jobs=jobs,
        cache_path=cache_path,
        use_cache=use_cache,
        progress=progress,
        model=model,
        splits=splits,
        label_depth=label_depth,
        label_from=label_from,
        verify_content=verify_content,
        **given,
    )


def probe(
    source: PathLike,
    *,
    test: PathLike | None = None,
    settings: ProbeSettings | None = None,
    cache: Cache = None,
    jobs: int | None = None,
    progress: ProgressSink | None = None,
    **probe_settings: object,
) -> ProbeReport:
    """Train the probe's arms on `source` (and `test`, else its test split or a hold-out) and return the
    ProbeReport. Either `settings` (a ProbeSettings) or its fields as keywords (seeds=3, epochs=2, ...).
    Needs the `probe` extra (torch); without it, MissingExtraError names the pip line."""
    from . import probing  # torch itself loads only when training starts

    if settings is not None and probe_settings:
        raise ParameterError(f"give {{settings}} or {', '.join(f'{{{n}}}' for n in probe_settings)}, not both")
    if settings is None:
        known = {f.name for f in dataclasses.fields(probing.ProbeSettings)}
        unknown = sorted(set(probe_settings) - known)
        if unknown:
            raise ParameterError(f"unknown probe setting {{{unknown[0]}}}: the settings are {', '.join(sorted(known))}")
        settings = probing.ProbeSettings(**probe_settings)  # type: ignore[arg-type]
    cache_path, use_cache = _cache_arguments(cache)
    return probing.run_probe(
        source, test=test, settings=settings, jobs=jobs, cache_path=cache_path, use_cache=use_cache, progress=progress
    )
