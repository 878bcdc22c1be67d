"""Typed values that flow between the stages: records, groups, class statistics, the scan report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

KINDS = ("exact", "pixel", "near")  # exact ⊂ pixel ⊂ near: same bytes, same pixels, similar pixels
HASH_METHODS = ("phash", "dhash", "ahash", "whash")
# cnn: near pairs from CNN embeddings (embed.py); its exact/pixel digests come from the phash fingerprints
METHODS = (*HASH_METHODS, "cnn")


def _pickled_by_fields(cls):
    """Pickle as its fields, read back by _rebuilder's function: several times as fast to load as dataclasses'
    per-field __setstate__, and a warm rescan or an update loads 100,000s of these (the stored answer and groups,
    cache.load_result)."""
    values = attrgetter(*cls.__slots__)
    rebuild = _rebuilder(cls)
    cls.__reduce__ = lambda self: (rebuild, values(self))
    return cls


def _rebuilder(cls):
    """A function of this module, `_rebuilt_<class>(*fields)`, that makes an instance of a frozen dataclass with
    slots by setting each slot through its descriptor, one statement each: what its __init__ does through
    object.__setattr__ and the field's name, in half the time (generated, as dataclasses makes __init__)."""
    name = f"_rebuilt_{cls.__name__}"
    fields = cls.__slots__
    scope = {"_new": object.__new__, "_cls": cls, **{f"_set_{f}": getattr(cls, f).__set__ for f in fields}}
    body = "".join(f"    _set_{f}(made, {f})\n" for f in fields)
    exec(f"def {name}({', '.join(fields)}):\n    made = _new(_cls)\n{body}    return made\n", scope)
    function = scope[name]
    function.__module__ = __name__  # pickled by reference: the unpickler finds it here (cache._ResultUnpickler)
    globals()[name] = function
    return function


@dataclass(frozen=True, slots=True)
class Root:
    """One folder of images, or one split of another source: a split of a dataset (train, test, ...) or a whole
    unsplit one."""

    name: str  # unique; also the split name of its images
    path: str  # absolute (a URL for a remote source)
    labelled: bool  # True when its folders are classes (for other sources: when items carry labels)
    # The rest is set by layout detection (discover.py); the defaults are a plain folder.
    role: str = ""  # "train", "eval" or "unlabelled" (an extra pool, never evaluation); "": decided by name
    label_pattern: str = ""  # a regex over a folder path relative to the root, group 'label'; "": first level
    exclude: tuple[str, ...] = ()  # absolute folders inside this one that belong to another root
    source: str = "folder"  # the kind of source it was read from (engine/sources: folder, webdataset, ...)


@dataclass(frozen=True, slots=True)
class Layout:
    """What discovery decided about the folders, in words the report shows (README "Layouts")."""

    kind: str  # "labelled", "splits", "unlabelled" or "named splits" (--split)
    reason: str  # one line: why


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One file found by discovery (not yet decoded)."""

    root: str
    path: str  # POSIX, relative to its root
    label: str | None
    size: int
    mtime_ns: int
    abspath: str
    name: str | None = None  # an item's own name where its path (an id) does not hold it: sources/base.py Item.name

    @property
    def split(self) -> str:
        return self.root

    @property
    def key(self) -> tuple[str, str]:
        return (self.root, self.path)


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that could not be fingerprinted, with a one-line reason."""

    root: str
    path: str
    reason: str


# Rates, priors, skews and inflations are kept to this many decimals, in the objects as in the JSON report, so
# that a report saved and read back (ScanReport.to_json / from_json) is equal to the one the scan returned.
DECIMALS = 6

# The defaults that depend on other settings (Settings.resolve applies them); chosen on CIFAR-10 and the ciFAIR
# development pairs (README, "Accuracy on real data" and "Choosing the pHash radius without verification").
UNVERIFIED_THRESHOLD = 6  # the pHash radius when near pairs are not verified (verify=False)
CNN_MIN_SIMILARITY = 0.90  # method "cnn": cosine similarity of the embeddings (imagededup's default)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that decides a scan's answer, and the one place of the scan defaults: the pipeline, the CLI,
    the config file, check and the report read them here. Build one with Settings.resolve, which fills the
    defaults that depend on the method and on verify, and says which parameters do not go together."""

    method: str = "phash"  # one of METHODS
    # Hamming radius. With verify, it only proposes candidates (as do the neighbours): the verification score
    # decides. Without verify it decides: a pair within it is a near copy. 0 with cnn (no hash radius is used).
    threshold: int = 10
    flips: bool = False  # also match mirrored copies (left-right; with rotations, every rotation of the mirror too)
    verify: bool = True  # near candidates must pass the thumbnail check (verify.py); False with cnn
    neighbours: int = 3  # nearest neighbours per image proposed as candidates (0: hash pairs only)
    min_similarity: float = 0.84  # verification score a candidate must reach; with cnn: the cosine similarity
    fast_decode: bool = False  # JPEGs decoded at reduced scale: faster on photos, hashes no longer imagededup's
    rotations: bool = False  # also match copies rotated by 90, 180 and 270 degrees (and with flips, their mirrors)

    @classmethod
    def resolve(
        cls,
        *,
        method: str | None = None,
        threshold: int | None = None,
        flips: bool | None = None,
        verify: bool | None = None,
        neighbours: int | None = None,
        min_similarity: float | None = None,
        fast_decode: bool | None = None,
        model: object = None,
        rotations: bool | None = None,
    ) -> Settings:
        """The settings of a scan from its parameters (None: the default); `model` is only checked (it goes
        with method 'cnn'). Raises ParameterError naming the parameters."""
        from ..errors import ParameterError

        defaults = cls()
        method = defaults.method if method is None else method
        flips = defaults.flips if flips is None else flips
        verify = defaults.verify if verify is None else verify
        fast_decode = defaults.fast_decode if fast_decode is None else fast_decode
        rotations = defaults.rotations if rotations is None else rotations
        if method not in METHODS:
            raise ParameterError(f"unknown {{method}} {method!r}: choose one of {', '.join(METHODS)}")
        if model is not None and method != "cnn":
            raise ParameterError("{model} goes with {method='cnn'}")
        if rotations and method != "phash":
            raise ParameterError(
                "{rotations} works with {method='phash'}: rotated copies are hashed from its thumbnail"
            )
        if method == "cnn":
            if threshold or flips or neighbours:  # 0 is what a cnn report records: a resolved cnn Settings passes
                raise ParameterError(
                    "{threshold}, {flips} and {neighbours} are hash settings; with {method='cnn'} the near "
                    f"duplicate threshold is {{min_similarity}} (cosine, default {CNN_MIN_SIMILARITY:.2f})"
                )
            threshold, verify, neighbours = 0, False, 0
            if min_similarity is None:
                min_similarity = CNN_MIN_SIMILARITY
        elif threshold is None:
            threshold = defaults.threshold if verify else UNVERIFIED_THRESHOLD
        if not 0 <= threshold <= 64:
            raise ParameterError(f"{{threshold}} must be between 0 and 64, not {threshold}")
        if neighbours is not None and neighbours < 0:
            raise ParameterError(f"{{neighbours}} must be 0 or more, not {neighbours}")
        if min_similarity is not None and not -1 <= min_similarity <= 1:
            raise ParameterError(f"{{min_similarity}} must be between -1 and 1, not {min_similarity}")
        return cls(
            method=method,
            threshold=threshold,
            flips=flips,
            verify=verify,
            neighbours=defaults.neighbours if neighbours is None else neighbours,
            min_similarity=defaults.min_similarity if min_similarity is None else min_similarity,
            fast_decode=fast_decode,
            rotations=rotations,
        )


TRANSFORMS = ("mirror", "rot90", "rot180", "rot270", "rot90-mirror", "rot180-mirror", "rot270-mirror")


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Link:
    """How a non-kept member copies another member of its group (groups.py says which one)."""

    kind: str  # one of KINDS: exact (same bytes), pixel (same decoded pixels), near (verified similar)
    to: int  # index in the group's members: the keeper, or for an exact/pixel copy the first of its twins
    distance: int  # Hamming distance of the two hashes (under `transform`); 0 for exact and pixel copies
    score: float | None = None  # the verification score (cosine with --method cnn); None where no score decided
    transform: str | None = None  # one of TRANSFORMS when the copy matched mirrored or rotated


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class GroupMember:
    root: str
    path: str
    label: str | None
    keep: bool
    width: int = 0
    height: int = 0
    size: int = 0
    link: Link | None = None  # None for the kept member
    name: str | None = None  # ImageRecord.name: the keep rule's name for a Parquet row (dedup's plan reads it)


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """A kept member and its copies: every other member links to the keeper, or (exact and pixel copies) to a
    twin of its own, itself a copy of the keeper (groups.py)."""

    id: int
    kind: str  # one of KINDS: the loosest link of the group
    max_distance: int  # largest Hamming distance between two members' hashes
    members: tuple[GroupMember, ...]
    leak: bool | None = None  # set when roots have roles (an unlabelled pool is not evaluation); None: spans splits

    def copies(self, kind: str) -> int:
        """How many members are copies of this kind (their own link)."""
        return sum(1 for m in self.members if m.link is not None and m.link.kind == kind)

    @property
    def exact_copies(self) -> int:
        """Members byte-identical to another member."""
        return self.copies("exact")

    @property
    def pixel_copies(self) -> int:
        """Members pixel-identical to another member (byte-identical ones included, as in schema_version 1)."""
        return self.copies("exact") + self.copies("pixel")

    def link_kinds(self, index: int) -> tuple[str, ...]:
        """The kinds of the links that touch member `index`: its own, and those of the members copying it."""
        own = self.members[index].link
        kinds = {own.kind} if own is not None else set()
        kinds.update(m.link.kind for m in self.members if m.link is not None and m.link.to == index)
        return tuple(k for k in KINDS if k in kinds)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted({m.label for m in self.members if m.label is not None}))

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({m.root for m in self.members}))

    @property
    def is_label_conflict(self) -> bool:
        return len(self.labels) > 1

    @property
    def is_leak(self) -> bool:
        return len(self.splits) > 1 if self.leak is None else self.leak

    @property
    def kept(self) -> GroupMember:
        return next(m for m in self.members if m.keep)


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class ClassStats:
    split: str
    label: str | None
    images: int  # n_c
    distinct: int  # u_c: distinct groups (or lone images) touching the class in this split
    redundant: int  # r_c = n_c - u_c
    duplication_rate: float  # r_c / n_c
    prior: float  # p_c = n_c / N
    prior_without_duplicates: float  # q_c = u_c / U
    inflation: float  # p_c / q_c


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class SplitStats:
    split: str
    role: str  # "train" (what the model learns from), "eval", or "unlabelled" (a pool: no leakage counted)
    images: int
    distinct: int
    redundant: int
    skew: float  # total variation distance between the class priors with and without duplicates
    wasted_fraction: float  # share of an epoch spent on redundant copies
    leaked: int  # eval splits: images with a copy in the train split
    leaked_fraction: float


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Summary:
    images: int
    skipped: int
    groups: int
    redundant: int  # exact_copies + pixel_copies + near_copies
    label_conflicts: int
    leaked: int
    skew: float
    wasted_fraction: float
    # redundant copies by the kind of their own link (groups.py): a byte copy inside a near group is exact
    exact_copies: int = 0
    pixel_copies: int = 0
    near_copies: int = 0


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What a rescan of unchanged folders reuses (cache.load_result): the report without its run facts."""

    summary: Summary
    classes: tuple[ClassStats, ...]
    splits: tuple[SplitStats, ...]
    # as stored, a GroupsChange where the groups were an update's (pipeline._stored_answer): read back as a tuple
    groups: tuple[DuplicateGroup, ...]
    skipped: tuple[Skipped, ...]
    train_split: str


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class GroupsChange:
    """Groups kept as a change of groups stored under another key (`base`, cache.store_result): those at `kept`
    there (their indices, in order) and `placed`, each at the place its id says; every group numbered by its place.
    An update's answer is stored so: its size follows the change, not the dataset (regroup.placed)."""

    base: bytes
    kept: tuple[int, ...]
    placed: tuple[DuplicateGroup, ...]

    def applied(self, base: Sequence[DuplicateGroup]) -> tuple[DuplicateGroup, ...] | None:
        """The groups, from the `base` groups; None when these cannot be the ones the change was made from."""
        count = len(self.kept) + len(self.placed)
        placed = {g.id: g for g in self.placed}
        if len(placed) < len(self.placed) or any(not 0 <= p < count for p in placed):
            return None
        if any(not 0 <= k < len(base) for k in self.kept):
            return None
        kept = iter(self.kept)
        every = []
        for place in range(count):
            group = placed.get(place)
            if group is None:
                old = base[next(kept)]
                group = old if old.id == place else renumbered(old, place)
            every.append(group)
        return tuple(every)


_AFTER_ID = attrgetter(*DuplicateGroup.__slots__[1:])  # every field but id (the first)


def renumbered(group: DuplicateGroup, number: int) -> DuplicateGroup:
    """dataclasses.replace(group, id=number), a few times faster (an update renumbers thousands)."""
    return DuplicateGroup(number, *_AFTER_ID(group))


@dataclass(frozen=True, slots=True)
class ScanReport:
    tool_version: str
    roots: tuple[Root, ...]
    settings: Settings
    summary: Summary
    classes: tuple[ClassStats, ...]
    splits: tuple[SplitStats, ...]
    groups: tuple[DuplicateGroup, ...]
    skipped: tuple[Skipped, ...]
    train_split: str = ""
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    cache_hits: int = field(default=0, compare=False)
    decoded: int = field(default=0, compare=False)
    layout: Layout | None = None  # how the folders were read (None: a report saved before layouts were recorded)
    warnings: tuple[str, ...] = ()  # one line each: what was not scanned, or scanned otherwise than it looks

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The schema_version 1 JSON report (the bytes `dupaudit scan --json` writes), written to `path` when
        given (its folder is created) and returned."""
        from ..formats.json import render, write  # the report's codec lives with the other output formats

        text = render(self)
        if path is not None:
            write(path, text)
        return text

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ScanReport:
        """Read a report written by to_json or `dupaudit scan --json` (InputError when it is not one); equal to
        the report that was saved, but for the run facts (timings, cache hits) that the JSON does not hold."""
        from ..formats.json import read

        return read(path)

    @property
    def label_conflict_groups(self) -> tuple[DuplicateGroup, ...]:
        return tuple(g for g in self.groups if g.is_label_conflict)

    @property
    def leak_groups(self) -> tuple[DuplicateGroup, ...]:
        return tuple(g for g in self.groups if g.is_leak)
