"""Semantic near duplicates (`--method cnn`): CNN embeddings compared by cosine similarity.

The encoder is imagededup's CNN default: torchvision's MobileNetV3-Small cut after global average pooling
(576 features), fed as imagededup feeds it (resize to 256x256, centre crop 224, ImageNet normalisation). Its
weights come only from a local file (`--model PATH`, $DUPAUDIT_CNN_MODEL, or the torch hub cache file that
imagededup/torchvision would have downloaded): nothing is ever downloaded. torch and torchvision (the `cnn`
extra) are imported inside the functions that need them, never at module level.

Embeddings are L2-normalised and stored as float16 in the fingerprint cache, keyed by file identity and a digest
of the weights file; pairs are rows whose cosine similarity reaches the threshold, found with faiss.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import itertools
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import InputError, MissingExtraError, ParameterError
from .cache import cacheable
from .fingerprint import default_jobs
from .model import ImageRecord
from .progress import NullProgress, ProgressSink

if TYPE_CHECKING:
    import torch

    from .cache import FingerprintCache

log = logging.getLogger(__name__)

ENV_VAR = "DUPAUDIT_CNN_MODEL"
HUB_FILE = "mobilenet_v3_small-047dcff4.pth"  # torchvision's IMAGENET1K_V1 weights, as the hub cache names them
DIMENSIONS = 576
BATCH = 64  # images per forward pass, as imagededup
EMBED_VERSION = 1  # bump when the preprocessing or the network cut changes: cached embeddings then go unused
# Above this many images the exact (flat, quadratic) search gives way to an inverted-file index: approximate,
# but the flat search would then cost more than computing the embeddings did.
EXACT_LIMIT = 100_000
IVF_PROBES = 32
_QUERY_CHUNK = 4096  # bounds the memory of one faiss range_search result
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# Given the indices of the records to embed, yields (index, image) for each of them in any order: the image as a
# file path, its bytes (a tar member, a Parquet row: sources/reading.record_inputs), or None when unreadable.
Inputs = Callable[[list[int]], Iterator[tuple[int, "str | bytes | None"]]]


@dataclass(frozen=True, slots=True)
class Weights:
    """A local weights file for the encoder, where it was found, and the digest its embeddings are cached under."""

    path: str
    source: str  # "model" (the parameter), "$DUPAUDIT_CNN_MODEL" or "the torch hub cache"
    digest: bytes


@dataclass(frozen=True, slots=True)
class Embedded:
    """One embedding per record, in order; a record that could not be decoded again has a zero row."""

    vectors: np.ndarray  # (n, 576) float32, L2-normalised (float16 precision: what the cache holds)
    valid: np.ndarray  # (n,) bool: False where the file could not be decoded
    computed: int  # embeddings the network computed in this call
    cache_hits: int


def hub_cache_path() -> Path:
    """Where torch.hub (and so torchvision and imagededup) keeps mobilenet_v3_small's weights."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints" / HUB_FILE


def find_weights(model: str | os.PathLike | None = None) -> Weights:
    """The weights file to use: `model`, else $DUPAUDIT_CNN_MODEL, else the torch hub cache file.

    Needs no torch: a missing file is reported before anything heavy is imported or decoded."""
    how_to = (
        f"save torchvision's mobilenet_v3_small state_dict on a machine with internet (see README) and pass "
        f"its path as {{model}} or {ENV_VAR}=PATH; nothing is downloaded"
    )
    for value, source in ((model, "model"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ParameterError(f"{_named(source)} {value}: no such weights file; {how_to}")
        return Weights(str(path), source, _file_digest(path))
    hub = hub_cache_path()
    if hub.is_file():
        return Weights(str(hub), "the torch hub cache", _file_digest(hub))
    raise ParameterError(
        f"{{method='cnn'}} needs MobileNetV3-Small weights and found none (no {{model}}, no ${ENV_VAR}, no {hub}): "
        f"{how_to}"
    )


def _named(source: str) -> str:
    """A Weights.source as ParameterError writes it: the parameter `model` is spelled --model on the CLI."""
    return "{model}" if source == "model" else source


def _file_digest(path: Path) -> bytes:
    digest = hashlib.blake2b(f"mobilenet_v3_small/gap/{EMBED_VERSION}".encode(), digest_size=16)
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the weights file ({exc.strerror or exc})") from None
    return digest.digest()


def require_torch(load: bool = True) -> None:
    """Raise MissingExtraError (exit 2 with the pip line) when torch or torchvision is not installed.

    load=False only looks for the packages: importing torch takes seconds, and a warm rescan never needs it."""
    try:
        if not load:
            if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
                raise ImportError("torch")
            return
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        raise MissingExtraError("cnn", "{method='cnn'}") from None


def build_encoder(weights: Weights) -> torch.nn.Module:
    """MobileNetV3-Small with the given weights, cut after global average pooling; ParameterError if unusable."""
    require_torch()
    import torch
    import torchvision

    hint = "expected a torchvision mobilenet_v3_small state_dict saved with torch.save(model.state_dict(), PATH)"
    try:
        # weights_only: a weights file is data; a pickled model (code) is refused rather than run
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ParameterError(
            f"{weights.path} ({_named(weights.source)}): not a file of plain tensors (not made by torch.save, "
            f"or a whole pickled model); {hint}"
        ) from None
    except Exception as exc:  # zip, I/O or torch errors alike: the file is not what we need
        raise ParameterError(
            f"{weights.path} ({_named(weights.source)}): not a loadable weights file ({_first_sentence(exc)}); {hint}"
        ) from None
    if not isinstance(state, dict):
        raise ParameterError(
            f"{weights.path} ({_named(weights.source)}): holds a {type(state).__name__}, not a state_dict; {hint}"
        )
    network = torchvision.models.mobilenet_v3_small(weights=None)  # weights=None: never download
    try:
        network.load_state_dict(state)
    except Exception as exc:
        raise ParameterError(
            f"{weights.path} ({_named(weights.source)}): does not fit mobilenet_v3_small "
            f"({_first_sentence(exc)}); {hint}"
        ) from None
    return torch.nn.Sequential(network.features, network.avgpool, torch.nn.Flatten(1)).eval()


def _first_sentence(exc: Exception) -> str:
    """torch's messages run to paragraphs: their first sentence, on one line, at most 200 characters."""
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    return (text[:200] + ("…" if len(text) > 200 else "")) or type(exc).__name__


def preprocess(source: str | bytes | None) -> np.ndarray | None:
    """The network input for one image, a file path or its bytes (3x224x224 float32), as imagededup's
    MobilenetV3.transform; None if unreadable (or None given: bytes that could not be had).

    The same numbers as torchvision's Resize((256, 256)) (Pillow bilinear) + CenterCrop(224) + ToTensor +
    Normalize, without building a tensor per image."""
    if source is None:
        return None
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
            image: Image.Image = opened
            if image.mode != "RGB":
                image = image.convert("RGBA").convert("RGB")  # as imagededup: alpha dropped, not composited
            image = image.resize((256, 256), Image.Resampling.BILINEAR).crop((16, 16, 240, 240))
            pixels = np.asarray(image, dtype=np.float32)
    except Exception:  # decoded fine for the fingerprints moments ago; changed or unreadable since
        return None
    return ((pixels / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)


def embed_records(
    records: Sequence[ImageRecord],
    weights: Weights,
    *,
    jobs: int | None = None,
    cache: FingerprintCache | None = None,
    progress: ProgressSink | None = None,
    inputs: Inputs | None = None,
) -> Embedded:
    """Embeddings of every record: from the cache when unchanged, else by running the network in batches.

    This stage decodes each new file again (at 224x224, RGB): the fingerprint stage decodes straight to the
    small grayscale sizes the hashes need and keeps nothing larger. Acceptable for an opt-in stage whose network
    costs more than the decoding; a warm rescan reads the embeddings from the cache and decodes nothing.
    `inputs`: where the images of records that are not files are (tar members, Parquet rows: see Inputs);
    None: every record is a file at its abspath."""
    progress = progress or NullProgress()
    count = len(records)
    vectors = np.zeros((count, DIMENSIONS), dtype=np.float16)
    valid = np.ones(count, dtype=bool)
    stored = (
        cache.embeddings(((r.abspath, r.size, r.mtime_ns) for r in records if cacheable(r.abspath)), weights.digest)
        if cache is not None
        else {}
    )
    todo = []
    for index, record in enumerate(records):
        vector = stored.get(record.abspath)
        if vector is not None and len(vector) == DIMENSIONS * 2:
            vectors[index] = np.frombuffer(vector, dtype=np.float16)
        else:
            todo.append(index)
    hits = count - len(todo)
    if todo:
        valid[todo] = False  # until embedded: an image the stream does not give joins no near group
        stream = inputs(todo) if inputs is not None else ((i, records[i].abspath) for i in todo)
        _compute(records, stream, len(todo), weights, vectors, valid, jobs, cache, progress)
    if not valid.all():
        log.warning(
            "%d %s could not be decoded again for their embeddings: they join no near group",
            int((~valid).sum()),
            "file" if int((~valid).sum()) == 1 else "files",
        )
    return Embedded(vectors.astype(np.float32), valid, len(todo), hits)


def _compute(records, stream, count, weights, vectors, valid, jobs, cache, progress) -> None:
    import torch

    encoder = build_encoder(weights)
    threads = max(1, min(jobs or default_jobs(), os.cpu_count() or 1))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    progress.start("embedding", count)
    try:
        # Pillow releases the GIL while it decodes and resizes, so threads decode a batch side by side.
        with ThreadPoolExecutor(max_workers=threads) as pool, torch.inference_mode():
            while chunk := list(itertools.islice(stream, BATCH)):
                batch = [i for i, _ in chunk]
                inputs = list(pool.map(preprocess, [image for _, image in chunk]))
                done = [i for i, x in zip(batch, inputs) if x is not None]
                for i, x in zip(batch, inputs):
                    valid[i] = x is not None
                if done:
                    features = encoder(torch.from_numpy(np.stack([x for x in inputs if x is not None]))).numpy()
                    norms = np.linalg.norm(features, axis=1, keepdims=True)
                    vectors[done] = (features / np.maximum(norms, 1e-12)).astype(np.float16)
                    if cache is not None:  # one transaction per batch: an interrupted scan keeps what it did
                        cache.store_embeddings(
                            (
                                (records[i].abspath, records[i].size, records[i].mtime_ns, vectors[i].tobytes())
                                for i in done
                                if cacheable(records[i].abspath)
                            ),
                            weights.digest,
                        )
                progress.advance(len(batch))
    finally:
        progress.finish()
        torch.set_num_threads(previous)


def similar_pairs(
    vectors: np.ndarray,
    min_similarity: float,
    *,
    valid: np.ndarray | None = None,
    threads: int | None = None,
    exact_limit: int = EXACT_LIMIT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, cosine) with i < j and cosine >= min_similarity between L2-normalised rows, sorted by (i, j).

    Exact (faiss IndexFlatIP range search, brute force in C++) up to `exact_limit` rows; above it an inverted-file
    index (IVF, IVF_PROBES lists probed per query) finds nearly all of them in far less time. Rows where `valid`
    is False take part in no pair."""
    import faiss  # imported here so that `dupaudit --help` and the pre-commit hook start fast

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.arange(len(vectors)) if valid is None else np.flatnonzero(valid)
    empty = np.empty(0, dtype=np.int64)
    if len(rows) < 2:
        return empty, empty, np.empty(0, dtype=np.float32)
    data = np.ascontiguousarray(vectors[rows])
    count, dimensions = data.shape
    if threads:
        faiss.omp_set_num_threads(threads)
    if count <= exact_limit:
        index: faiss.Index = faiss.IndexFlatIP(dimensions)
    else:
        lists = int(4 * math.sqrt(count))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimensions), dimensions, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(count, min(count, 64 * lists), replace=False)  # seeded: same run
        ivf.train(data[np.sort(sample)])
        ivf.nprobe = IVF_PROBES
        index = ivf
        log.info("%d embeddings: approximate search (IVF, %d lists, %d probed)", count, lists, IVF_PROBES)
    index.add(data)
    # faiss keeps inner products strictly above the radius: ask for the next float down, then apply >= ourselves.
    radius = float(np.nextafter(np.float32(min_similarity), np.float32(-np.inf)))
    firsts, seconds, scores = [], [], []
    for start in range(0, count, _QUERY_CHUNK):
        limits, similarity, found = index.range_search(data[start : start + _QUERY_CHUNK], radius)
        counts = np.diff(limits.astype(np.int64))  # faiss's stubs type `limits` loosely; these are int64 offsets
        query = np.repeat(np.arange(start, start + len(limits) - 1), counts.astype(np.intp))
        keep = (found != query) & (similarity >= np.float32(min_similarity))
        query, found, similarity = query[keep], found[keep].astype(np.int64), similarity[keep]
        firsts.append(np.minimum(query, found))
        seconds.append(np.maximum(query, found))
        scores.append(similarity)
    first, second, score = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(scores)
    # Each pair is usually found from both ends (always, by the exact search): keep it once, at its best score.
    order = np.lexsort((-score, second, first))
    first, second, score = first[order], second[order], score[order]
    unique = np.ones(len(first), dtype=bool)
    unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return rows[first[unique]], rows[second[unique]], score[unique]
