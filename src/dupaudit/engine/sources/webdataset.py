"""WebDataset: samples in plain .tar shards, grouped by key (the member name up to its first dot).

The image is the member with an image extension; the label comes from `.cls` (an integer index, or a class name)
or `.json` (its "label"); integer labels are named by a `classes.txt` (one name a line) beside the shards. The
split is the shard's parent folder or its file-name prefix (`train/...`, `train-000000.tar`). A shard is read
as one sequential stream (tarfile's "r|" mode), whatever the store.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import InputError
from .base import Filtered, Item, Partition, SourceOptions, split_of
from .storage import filesystem, find_files, read_reason, relative_to, retrying, unqualified, version_of

SHARD_EXTENSIONS = (".tar",)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm", "pnm", "jp2")
CLASS_NAMES = "classes.txt"
_IMAGE_SET = frozenset(IMAGE_EXTENSIONS)  # looked up once per member


@dataclass(frozen=True, slots=True)
class WebDatasetSource:
    kind = "webdataset"
    target: str
    url: str
    name: str
    base: str  # the folder item ids are relative to, in the filesystem's terms
    shards: tuple[tuple[str, str], ...]  # (path, version)
    classes: tuple[tuple[str, tuple[str, ...]], ...]  # folder -> class names from its classes.txt
    storage_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def open(cls, target: str, options: SourceOptions) -> WebDatasetSource:
        fs, base, files = find_files(target, options.storage_options, SHARD_EXTENSIONS)
        if not files:
            raise InputError(f"{target}: no .tar shards found")
        classes = []
        for folder in sorted({posixpath.dirname(path) for path, _ in files} | {base}):
            names = _class_names(fs, posixpath.join(folder, CLASS_NAMES))
            if names is not None:
                classes.append((folder, names))
        name = posixpath.basename(base.rstrip("/")) or "root"
        return cls(
            target,
            unqualified(fs, base),
            name,
            base,
            tuple((path, version_of(fs, path, info)) for path, info in files),
            tuple(classes),
            options.storage_options,
        )

    def partitions(self) -> list[Partition]:
        return [Partition(path, 0, version, self._split(path)) for path, version in self.shards]

    def _split(self, path: str) -> str | None:
        relative = relative_to(self.base, path)
        parent = posixpath.basename(posixpath.dirname(relative)) if "/" in relative else ""
        return split_of(parent) if parent and split_of(parent) == parent else split_of(posixpath.basename(path))

    def read(self, partition: Partition) -> Iterator[Item]:
        fs, _ = filesystem(self.target, self.storage_options)
        shard_id = relative_to(self.base, partition.location)
        names = dict(self.classes)
        classes = names.get(posixpath.dirname(partition.location), names.get(self.base))
        sample: dict[str, tuple[str, bytes]] = {}
        key = None
        try:
            for name, data in _shard_members(fs, partition.location):
                member_key, _, extension = _split_name(name)
                if member_key != key:
                    yield from self._sample(shard_id, key, sample, classes, partition.split)
                    key, sample = member_key, {}
                sample[extension] = (name, data)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            yield from self._sample(shard_id, key, sample, classes, partition.split, complete=False)
            reason = "truncated or corrupt tar shard" if isinstance(exc, (tarfile.TarError, EOFError)) else None
            yield Item(shard_id, partition.split, None, None, f"{reason or read_reason(exc)}: {exc}".rstrip(": "))
            return
        yield from self._sample(shard_id, key, sample, classes, partition.split)

    def write_filtered(self, out: str, dropped: set[str]) -> Filtered:
        """Copy the shards to the folder `out` (same names and layout, classes.txt too) without the samples whose
        image is in `dropped`. Members are copied byte for byte, in their order."""
        from .writing import fresh_output

        fs, _ = filesystem(self.target, self.storage_options)
        out_fs, out_path = fresh_output(out, folder=True, source_location=self.url)
        result = Filtered([], 0, [])
        for folder, _names in self.classes:
            target = f"{out_path}/{relative_to(self.base, folder)}".rstrip("/") + "/" + CLASS_NAMES
            out_fs.makedirs(posixpath.dirname(target), exist_ok=True)
            out_fs.pipe_file(target, fs.cat_file(posixpath.join(folder, CLASS_NAMES)))
        for path, _version in self.shards:
            shard_id = relative_to(self.base, path)
            target = f"{out_path}/{shard_id}"
            out_fs.makedirs(posixpath.dirname(target), exist_ok=True)
            with fs.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as shard:
                with out_fs.open(target, "wb") as sink, tarfile.open(fileobj=sink, mode="w") as copy:
                    for key, members in _samples(shard):
                        images = [m for m, _ in members if m.name.rsplit(".", 1)[-1].lower() in _IMAGE_SET]
                        ids = [f"{shard_id}/{m.name}" for m in images]
                        if any(i in dropped for i in ids):
                            result.dropped += len(ids)
                            continue
                        result.kept.extend(ids)
                        for member, data in members:
                            copy.addfile(member, io.BytesIO(data))
            result.written.append(target)
        return result

    @staticmethod
    def _sample(shard_id, key, sample, classes, split, complete=True) -> Iterator[Item]:
        """The items of one sample (normally one image; each image member when there are several)."""
        if key is None:
            return
        images = [ext for ext in sample if ext.rsplit(".", 1)[-1].lower() in _IMAGE_SET]
        label = _label(sample, classes)
        for extension in sorted(images):
            member, data = sample[extension]
            item_id = f"{shard_id}/{member}"
            yield Item(item_id, split, label, data, None if data or complete else "truncated tar member")
        if not images and complete:
            yield Item(f"{shard_id}/{key}", split, label, None, "sample without an image member")


class _NotPlain(Exception):
    """A header the lean reader leaves to tarfile (pax, GNU long names, base-256 sizes, sparse files)."""


def _shard_members(fs, path: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file of a shard, in order, read as one stream.

    Plain ustar/v7 headers (what WebDataset's writers and `tar` make for short names) are parsed here: tarfile's
    per-member cost (about 65 us, measured on CIFAR-size members) is more than a third of decoding a 32x32 JPEG.
    At the first header of another kind the shard is read again by tarfile, from the start."""
    yielded = 0
    try:
        with retrying(lambda: fs.open(path, "rb")) as stream:
            for named in _plain_members(stream):
                yield named
                yielded += 1
        return
    except _NotPlain:
        pass
    with retrying(lambda: fs.open(path, "rb")) as stream, tarfile.open(fileobj=stream, mode="r|") as shard:
        seen = 0
        for member in shard:
            if not member.isfile():
                continue
            handle = shard.extractfile(member)
            data = handle.read() if handle else b""
            seen += 1
            if seen > yielded:
                yield member.name, data


_PLAIN_TYPES = (b"0", b"\0", b"7")  # regular files
_SKIPPED_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, folders, fifos: no bytes of their own
_END = bytes(512)  # an end-of-archive block
_CHUNK = 1 << 22  # bytes read at a time: hundreds of small members per read call, one large member whole


def _plain_members(stream) -> Iterator[tuple[str, bytes]]:
    """The members of a plain tar stream, parsed from chunks of _CHUNK bytes: a read call per member costs more
    than parsing its header (fsspec's file objects add a Python layer to each)."""
    buffer, at = b"", 0
    while True:
        if len(buffer) - at < 512:
            buffer, at = buffer[at:] + _read_at_least(stream, _CHUNK), 0
            if len(buffer) < 512:
                if not buffer:
                    return  # no end-of-archive blocks: tolerated, as tarfile does
                raise tarfile.ReadError("unexpected end of data")
        header = buffer[at : at + 512]
        if header == _END:
            return  # end of archive
        if not _checksum_ok(header):
            raise tarfile.ReadError("bad checksum")
        kind = header[156:157]
        if kind not in _PLAIN_TYPES and kind not in _SKIPPED_TYPES or header[124] & 0x80:
            raise _NotPlain
        size = _octal(header[124:136])
        name = header[:100].partition(b"\0")[0]
        if header[345] and header[257:262] == b"ustar":
            name = header[345:500].partition(b"\0")[0] + b"/" + name
        start = at + 512
        at = start + (size + 511) // 512 * 512  # the next header
        if at > len(buffer):  # the member runs past the chunk: read the rest of it (and a chunk more)
            buffer, start, at = buffer[start:], 0, at - start
            buffer += _read_at_least(stream, at - len(buffer) + _CHUNK)
            if at > len(buffer):
                raise tarfile.ReadError("unexpected end of data")
        if kind in _PLAIN_TYPES:
            yield name.decode("utf-8", "surrogateescape"), buffer[start : start + size]


def _read_at_least(stream, count: int) -> bytes:
    """`count` bytes of the stream, or all that is left (a stream may return less than asked before its end)."""
    chunks = []
    while count > 0:
        chunk = stream.read(count)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _checksum_ok(header: bytes) -> bool:
    """The header's checksum (the sum of its bytes, its own field counted as spaces) matches the stored one.

    Summing 512 bytes in Python costs more than the rest of a member's parsing; Adler-32's low half is 1 + that
    sum modulo 65521, computed in C, so it decides unless the two differ by a multiple of 65521, and the exact sum
    settles any disagreement."""
    stored = _octal(header[148:156])
    field = sum(header[148:156])  # the field's own bytes, counted as 8 spaces (256) instead
    if zlib.adler32(header) & 0xFFFF == (1 + stored + field - 256) % 65521:
        return True
    return sum(header) - field + 256 == stored


def _octal(field: bytes) -> int:
    """A numeric header field: octal digits ended by NUL or spaces (else up to its first NUL, as tarfile reads it)."""
    try:
        value = int(field.rstrip(b"\0 "), 8)
    except ValueError:
        digits = field.split(b"\0", 1)[0].strip()
        try:
            value = int(digits, 8) if digits else 0
        except ValueError:
            raise tarfile.ReadError("bad header field") from None
    if value < 0:
        raise tarfile.ReadError("bad header field")
    return value


def _samples(shard: tarfile.TarFile):
    """(key, [(member, bytes)]) for each sample of a shard read as a stream."""
    key: str | None = None
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    for member in shard:
        if not member.isfile():
            continue
        member_key = _split_name(member.name)[0]
        if member_key != key and members:
            yield key, members
            members = []
        key = member_key
        handle = shard.extractfile(member)
        members.append((member, handle.read() if handle else b""))
    if members:
        yield key, members


def _split_name(name: str) -> tuple[str, str, str]:
    """WebDataset's key rule: the key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), dot, extension


def _label(sample: dict[str, tuple[str, bytes]], classes: tuple[str, ...] | None) -> str | None:
    """The sample's label: a class name, or an integer index named by classes.txt (kept as written when none
    or out of range)."""
    value = None
    if "cls" in sample:
        value = sample["cls"][1].decode("utf-8", "replace").strip()
    elif "json" in sample:
        try:
            meta = json.loads(sample["json"][1])
        except ValueError:
            return None
        found = meta.get("label", meta.get("cls")) if isinstance(meta, dict) else None
        value = None if found is None else str(found)
    if not value:
        return None
    if classes is not None and value.isdigit() and int(value) < len(classes):
        return classes[int(value)]
    return value


def _class_names(fs, path: str) -> tuple[str, ...] | None:
    try:
        text = retrying(lambda: fs.cat_file(path)).decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
    except Exception:  # noqa: BLE001 - an unreadable classes.txt leaves the labels as written
        return None
    return tuple(line.strip() for line in text.splitlines() if line.strip())
