"""The probe's data, without torch: which images train and test, their duplicate groups, the arms, injection.

A training set is a `TrainPool`: indices into the decoded images (an injected copy repeats an index, so copies
cost no memory), the duplicate group of each item, and which item deduplication keeps (exactly one per group).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..engine.model import DuplicateGroup, ImageRecord
from ..errors import InputError, ParameterError
from .pixels import MAX_STORED_SIZE, PixelStore

EVAL_SPLITS = ("test", "val", "valid", "validation")


@dataclass(frozen=True, slots=True, eq=False)
class TrainPool:
    """A training set as items over decoded images, with duplicate groups and the member dedup keeps."""

    items: np.ndarray  # int64: index into the decoded images, one per training example
    groups: np.ndarray  # int64: duplicate group of each item; a lone image has a group of its own
    keep: np.ndarray  # bool: the one item per group that the deduplicated arm keeps

    def __len__(self) -> int:
        return len(self.items)

    @property
    def redundant(self) -> int:
        """Items that deduplication removes."""
        return int(len(self.items) - self.keep.sum())

    def subset(self, mask: np.ndarray) -> TrainPool:
        return TrainPool(self.items[mask], self.groups[mask], self.keep[mask])


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    """The probe's choice of images: training records with their pool, test records, and where the test came from."""

    train: tuple[ImageRecord, ...]
    test: tuple[ImageRecord, ...]
    pool: TrainPool  # items index `train`
    test_source: str  # "split 'test'", "--test FOLDER" or "hold-out 20%"
    leaked: int  # test images with a copy in the training images


def class_names(records: Sequence[ImageRecord]) -> tuple[str, ...]:
    return tuple(sorted({r.label for r in records if r.label is not None}))


def label_indices(records: Sequence[ImageRecord], classes: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[r.label] for r in records], dtype=np.int64)


def member_groups(records: Sequence[ImageRecord], groups: Sequence[DuplicateGroup]) -> dict[tuple[str, str], int]:
    """Group id of every record that belongs to a duplicate group."""
    wanted = {r.key for r in records}
    found: dict[tuple[str, str], int] = {}
    for group in groups:
        for member in group.members:
            key = (member.root, member.path)
            if key in wanted:
                found[key] = group.id
    return found


def build_pool(records: Sequence[ImageRecord], groups: Sequence[DuplicateGroup]) -> TrainPool:
    """One item per record; members of a group share its id; dedup keeps the group's kept member if present here,
    else the first member here (so the training set always keeps exactly one copy of each group)."""
    group_of = member_groups(records, groups)
    kept_keys = {(g.kept.root, g.kept.path) for g in groups}
    next_id = max((g.id for g in groups), default=-1) + 1
    ids = np.empty(len(records), dtype=np.int64)
    for index, record in enumerate(records):
        if record.key in group_of:
            ids[index] = group_of[record.key]
        else:
            ids[index] = next_id
            next_id += 1
    keep = np.zeros(len(records), dtype=bool)
    chosen: dict[int, int] = {}
    for index, record in enumerate(records):
        if record.key in kept_keys and ids[index] not in chosen:
            chosen[int(ids[index])] = index
    for index in range(len(records)):
        chosen.setdefault(int(ids[index]), index)
    keep[list(chosen.values())] = True
    return TrainPool(np.arange(len(records), dtype=np.int64), ids, keep)


def stratified_holdout(
    records: Sequence[ImageRecord], groups: Sequence[DuplicateGroup], fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split records into (train, test), about `fraction` of each class in test, never splitting a group.

    The unit is a duplicate group (or a lone image); a group counts for the class of its first member.
    """
    group_of = member_groups(records, groups)
    units: dict[object, list[int]] = {}
    for index, record in enumerate(records):
        units.setdefault(("g", group_of[record.key]) if record.key in group_of else ("i", index), []).append(index)
    by_class: dict[str, list[list[int]]] = {}
    for members in units.values():
        by_class.setdefault(records[members[0]].label or "", []).append(members)
    rng = np.random.default_rng(seed)
    test_indices: set[int] = set()
    for label in sorted(by_class):
        class_units = sorted(by_class[label], key=lambda m: m[0])
        order = rng.permutation(len(class_units))
        target = fraction * sum(len(m) for m in class_units)
        taken = 0
        for position in order:
            members = class_units[position]
            if taken + len(members) / 2 >= target:  # adding it would overshoot more than it helps
                continue
            test_indices.update(members)
            taken += len(members)
    train = [r for i, r in enumerate(records) if i not in test_indices]
    test = [r for i, r in enumerate(records) if i in test_indices]
    return train, test


def stratified_subset(records: Sequence[ImageRecord], limit: int | None, seed: int) -> list[ImageRecord]:
    """At most `limit` records, the same share of every class, chosen at random (sorted order kept)."""
    if limit is None or limit >= len(records):
        return list(records)
    if limit < 1:
        raise ParameterError("{max_train} and {max_test} must be at least 1")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_class.setdefault(record.label or "", []).append(index)
    labels = sorted(by_class)
    quotas = _apportion([len(by_class[label]) for label in labels], limit)
    chosen: list[int] = []
    for label, quota in zip(labels, quotas):
        members = by_class[label]
        chosen.extend(members[i] for i in rng.choice(len(members), size=quota, replace=False))
    return [records[i] for i in sorted(chosen)]


def _apportion(weights: Sequence[int], total: int) -> list[int]:
    """Split `total` in proportion to `weights` with largest remainders (sums exactly to total)."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(np.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def choose_split(
    train_records: Sequence[ImageRecord],
    eval_records: Sequence[ImageRecord] | None,
    groups: Sequence[DuplicateGroup],
    *,
    holdout: float,
    eval_source: str,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> Split:
    """The training and test records (hold-out when there is no evaluation split), subsets, and the pool."""
    if eval_records:
        train, test, source = list(train_records), list(eval_records), eval_source
    else:
        train, test = stratified_holdout(train_records, groups, holdout, seed)
        source = f"hold-out {holdout:.0%} (duplicate groups kept whole)"
    train = stratified_subset(train, max_train, seed)
    test = stratified_subset(test, max_test, seed + 1)
    if not train or not test:
        raise InputError("too few images to train and test: need at least one of each")
    group_of = member_groups([*train, *test], groups)
    train_groups = {group_of[r.key] for r in train if r.key in group_of}
    leaked = sum(1 for r in test if group_of.get(r.key) in train_groups)
    return Split(tuple(train), tuple(test), build_pool(train, groups), source, leaked)


# --- injection (Aghabagherloo et al.): add copies in memory ------------------------------------------------------


def injected_counts(class_sizes: Sequence[int], mode: str, rate: float, chosen: Sequence[int]) -> list[int]:
    """Copies to add per class so that `rate` of the injected training set is copies.

    Both modes add the same total, K = round(rate * N / (1 - rate)) for N clean images, split by largest
    remainders so that the counts sum exactly to K:
    uniform: over every class in proportion to its size (each class within one copy of rate * n_c / (1 - rate),
    so every class has the same share of copies); nonuniform: over the `chosen` classes only.
    """
    if not 0 <= rate < 1:
        raise InputError(f"an injection rate must be in [0, 1), not {rate}")
    total = int(round(rate / (1 - rate) * sum(class_sizes)))
    if mode == "uniform":
        return _apportion(list(class_sizes), total)
    if mode == "nonuniform":
        weights = [n if i in set(chosen) else 0 for i, n in enumerate(class_sizes)]
        return _apportion(weights, total)
    raise ParameterError(f"{{inject}} must be uniform or nonuniform, not {mode!r}")


def choose_classes(classes: Sequence[str], named: Sequence[str], seed: int) -> list[int]:
    """Indices of the classes that get copies: the named ones, else half of them (at least one) at random."""
    if named:
        missing = [name for name in named if name not in classes]
        if missing:
            raise ParameterError(f"{{inject_classes}}: no class named {missing[0]!r} (classes: {', '.join(classes)})")
        return sorted(classes.index(name) for name in named)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(len(classes), size=max(1, len(classes) // 2), replace=False))


def inject(pool: TrainPool, labels: np.ndarray, counts: Sequence[int], seed: int) -> TrainPool:
    """Add counts[c] copies of class-c items to the pool; copies join their source's group and are never kept.

    Sources are the class's items in a random order, cycled, so copies spread as evenly as possible.
    """
    rng = np.random.default_rng(seed)
    item_labels = labels[pool.items]
    new_items, new_groups = [pool.items], [pool.groups]
    for label, count in enumerate(counts):
        if count <= 0:
            continue
        members = np.flatnonzero(item_labels == label)
        if len(members) == 0:
            raise InputError(f"cannot inject copies into class {label}: it has no training images")
        order = rng.permutation(members)
        sources = order[np.arange(count) % len(order)]
        new_items.append(pool.items[sources])
        new_groups.append(pool.groups[sources])
    added = sum(max(0, c) for c in counts)
    return TrainPool(
        np.concatenate(new_items), np.concatenate(new_groups), np.concatenate([pool.keep, np.zeros(added, dtype=bool)])
    )


def arm_pool(pool: TrainPool, arm: str, seed: int) -> TrainPool:
    """The training items of one arm: as-is, deduplicated (one per group), random-removed (same count, at random)."""
    if arm == "as-is":
        return pool
    if arm == "deduplicated":
        return pool.subset(pool.keep)
    if arm == "random-removed":
        rng = np.random.default_rng([seed, 0xD0D0])
        removed = rng.choice(len(pool), size=pool.redundant, replace=False)
        mask = np.ones(len(pool), dtype=bool)
        mask[removed] = False
        return pool.subset(mask)
    raise InputError(f"unknown arm {arm!r}")


# --- decoding ----------------------------------------------------------------------------------------------------


def _decode(path: str | bytes, size: int) -> np.ndarray:
    """One file to RGB uint8 (3, size, size): shorter side resized (bilinear), centre crop, EXIF orientation applied.

    A plain JPEG already of the size (CIFAR-style) decodes with the scan's libjpeg-turbo fast path (simplejpeg:
    6x faster than Pillow here, the same pixels); anything else goes through Pillow.
    """
    from PIL import Image, ImageOps

    from ..engine.fingerprint import _decode_jpeg_fast  # the scan's fast path: same pixels as Pillow

    if isinstance(path, bytes):  # an item of a tar shard, a Parquet file or a manifest (engine/sources)
        data = path
    else:
        with open(path, "rb") as handle:
            data = handle.read()
    fast = _decode_jpeg_fast(data)
    if fast is not None and fast[0].shape[:2] == (size, size):
        return np.ascontiguousarray(fast[0].transpose(2, 0, 1))
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
        if image.size != (size, size):
            width, height = image.size
            scale = size / min(width, height)
            resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
            left = (resized.width - size) // 2
            top = (resized.height - size) // 2
            image = resized.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def load_images(paths: Sequence[str | bytes], size: int, jobs: int | None = None) -> np.ndarray:
    """Decode every file (or image bytes) to RGB size x size (shorter side resized, centre crop): uint8
    (N, 3, size, size)."""
    jobs = max(1, jobs or min(16, os.cpu_count() or 1))
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    if not paths:
        return out

    def work(index: int) -> None:
        try:
            out[index] = _decode(paths[index], size)
        except Exception as exc:  # noqa: BLE001 - the scan decoded it, so this is rare; name the file
            name = paths[index] if isinstance(paths[index], str) else f"image {index}"
            raise InputError(f"{name!s}: cannot decode: {exc}") from exc

    if jobs == 1:
        for index in range(len(paths)):
            work(index)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:  # Pillow releases the GIL while decoding
            list(pool.map(work, range(len(paths)), chunksize=256))
    return out


Fetch = Callable[[Sequence[ImageRecord]], list[bytes | str]]  # records' bytes, or why not (sources)


def image_inputs(records: Sequence[ImageRecord], fetch: Fetch | None) -> list[str | bytes]:
    """What load_images decodes for the records: their files, or with `fetch` (records of tar shards, Parquet,
    manifests: engine/sources) their bytes; an item that cannot be read again is a one-line error."""
    if fetch is None:
        return [r.abspath for r in records]
    found = fetch(records)
    for record, data in zip(records, found):
        if isinstance(data, str):
            raise InputError(f"{record.root}/{record.path}: cannot read it again: {data}")
    return list(found)


def load_records(
    records: Sequence[ImageRecord],
    size: int,
    jobs: int | None = None,
    store: PixelStore | None = None,
    fetch: Fetch | None = None,
) -> tuple[np.ndarray, int]:
    """The records' RGB pixels (N, 3, size, size) and how many files were decoded: with a store, only the
    files it does not hold (unchanged) are decoded, and they are stored for the next probe. `fetch`: the bytes
    of records that are items of a container (image_inputs)."""
    out = np.empty((len(records), 3, size, size), dtype=np.uint8)
    found = store.get(records, size) if store is not None and size <= MAX_STORED_SIZE else {}
    for index, pixels in found.items():
        out[index] = pixels
    missing = [i for i in range(len(records)) if i not in found]
    if missing:
        decoded = load_images(image_inputs([records[i] for i in missing], fetch), size, jobs)
        out[missing] = decoded
        if store is not None and size <= MAX_STORED_SIZE:
            store.put([records[i] for i in missing], decoded, size)
    return out, len(missing)
