"""Pack the same few hundred CIFAR-10 images (with planted copies) as a folder, WebDataset shards, a Hugging
Face-layout Parquet dataset and CSV / JSONL manifests, for the source tests (and benchmarks/bench_sources.py)."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

CLASSES = ("airplane", "cat", "ship", "truck")


@dataclass
class Image_:
    stem: str  # unique name: the folder file name, the tar key, the manifest file name
    split: str
    label: str
    data: bytes


def pick_images(cifar: Path, per_class: int = 40, test_per_class: int = 15) -> list[Image_]:
    """Real CIFAR-10 JPEGs plus planted copies: exact (train and test: a leak), re-encoded (near), and an exact
    copy under another label (a label conflict)."""
    images = []
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label in CLASSES:
            for path in sorted((cifar / split / label).iterdir())[:count]:
                images.append(Image_(f"{split}_{label}_{path.stem}", split, label, path.read_bytes()))
    train = [i for i in images if i.split == "train"]
    images.append(Image_("copy_leak", "test", train[0].label, train[0].data))
    images.append(Image_("copy_exact", "train", train[5].label, train[5].data))
    other = train[per_class + 10]  # a cat, copied under "truck"
    images.append(Image_("copy_conflict", "train", CLASSES[-1], other.data))
    near = train[2 * per_class + 10]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(near.data)).save(buffer, "JPEG", quality=70)
    images.append(Image_("copy_near", "train", near.label, buffer.getvalue()))
    return images


def as_folder(images: list[Image_], root: Path) -> Path:
    for image in images:
        path = root / image.split / image.label / f"{image.stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.data)
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def as_webdataset(images: list[Image_], root: Path, per_shard: int = 64) -> Path:
    """shards/{train,test}/shard-NNNNNN.tar with integer .cls labels and classes.txt beside the shards."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split in ("train", "test"):
        chosen = [i for i in images if i.split == split]
        (root / split).mkdir(exist_ok=True)
        for shard, start in enumerate(range(0, len(chosen), per_shard)):
            with tarfile.open(root / split / f"shard-{shard:06d}.tar", "w") as tar:
                for image in chosen[start : start + per_shard]:
                    _add(tar, f"{image.stem}.jpg", image.data)
                    _add(tar, f"{image.stem}.cls", str(CLASSES.index(image.label)).encode())
    return root


HF_FEATURES = {
    "image": {"_type": "Image"},
    "label": {"names": list(CLASSES), "_type": "ClassLabel"},
}


def hf_table(images: list[Image_]):
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": i.data, "path": f"{i.stem}.jpg"} for i in images], type=image_type),
            "label": pa.array([CLASSES.index(i.label) for i in images], type=pa.int64()),
        }
    )
    metadata = {b"huggingface": json.dumps({"info": {"features": HF_FEATURES}}).encode()}
    return table.replace_schema_metadata(metadata)


def as_parquet(images: list[Image_], root: Path, row_group_size: int = 50) -> tuple[Path, dict[str, str]]:
    """A Hugging Face dataset repository: data/<split>-NNNNN-of-NNNNN.parquet. Returns the root and the stem of
    each item id (file#row)."""
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    stems = {}
    for split, files in (("train", 2), ("test", 1)):
        chosen = [i for i in images if i.split == split]
        size = -(-len(chosen) // files)
        for number in range(files):
            part = chosen[number * size : (number + 1) * size]
            name = f"data/{split}-{number:05d}-of-{files:05d}.parquet"
            pq.write_table(hf_table(part), root / name, row_group_size=row_group_size)
            stems.update({f"{name}#{row}": image.stem for row, image in enumerate(part)})
    return root, stems


def as_manifests(images: list[Image_], root: Path) -> tuple[Path, Path]:
    """Flat files (no class folders) and manifest.csv / manifest.jsonl with relative paths, labels and splits."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    rows = []
    for image in images:
        (root / "files" / f"{image.stem}.jpg").write_bytes(image.data)
        rows.append({"path": f"files/{image.stem}.jpg", "label": image.label, "split": image.split})
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.csv", root / "manifest.jsonl"


def stem_of(path: str, parquet_stems: dict[str, str] | None = None) -> str:
    if parquet_stems and path in parquet_stems:
        return parquet_stems[path]
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def groups_by_content(report: dict, parquet_stems: dict[str, str] | None = None, keep: bool = False) -> set:
    """Groups as sets of (split, label, image stem), with their kind: comparable across forms. `keep`: with each
    member's keep flag too, for forms whose items have file names (tar members, a manifest's files, Parquet rows
    whose image records its `path`): the keep rule reads names (docs/sources/parquet.md)."""
    return {
        (
            group["kind"],
            group["max_distance"],
            frozenset(
                (m["root"], m["label"], stem_of(m["path"], parquet_stems)) + ((m["keep"],) if keep else ())
                for m in group["members"]
            ),
        )
        for group in report["groups"]
    }
