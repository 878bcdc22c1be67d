"""The options that say how to read a dataset that is not a folder (engine/sources), shared by the commands."""

from __future__ import annotations

import typer

from ..engine.sources import SOURCE_TYPES, SourceOptions
from ..engine.sources.storage import parse_storage_options
from ..errors import InputError

SOURCE_OPTIONS = {
    "source_type": typer.Option(
        None,
        "--source-type",
        metavar="|".join(SOURCE_TYPES),
        help="What ROOT is, when the guess from its name and contents is wrong.",
    ),
    "image_column": typer.Option(None, "--image-column", help="Parquet: the column of image bytes."),
    "label_column": typer.Option(None, "--label-column", help="Parquet or manifest: the label column."),
    "split_column": typer.Option(None, "--split-column", help="Parquet or manifest: the split column."),
    "path_column": typer.Option(None, "--path-column", help="Manifest: the column of paths or URLs."),
    "storage_option": typer.Option(
        [],
        "--storage-option",
        metavar="KEY=VALUE",
        help="An fsspec storage option for URLs (repeatable; JSON values parsed, e.g. anon=true).",
    ),
}


def source_options(
    source_type: str | None,
    image_column: str | None,
    label_column: str | None,
    split_column: str | None,
    path_column: str | None,
    storage_option: list[str],
) -> SourceOptions:
    if source_type is not None and source_type not in SOURCE_TYPES:
        raise InputError(f"--source-type {source_type!r}: choose one of {', '.join(SOURCE_TYPES)}")
    return SourceOptions(
        source_type, image_column, label_column, split_column, path_column, parse_storage_options(storage_option)
    )
