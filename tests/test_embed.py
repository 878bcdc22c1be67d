"""--method cnn: CNN embeddings from a local weights file only, cached, searched by cosine similarity.

No network: the weights are a randomly initialised mobilenet_v3_small saved to tmp_path. Random weights give every
pair of images a high cosine similarity (about 0.95-0.998: the features share one large common direction), but an
image and a resized lossless copy of it stay above 0.9995, so the tests use a strict threshold and also check that
a loose one does merge unrelated images (the "not grouped" assertion is not vacuous).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.engine import embed
from dupaudit.engine.discover import discover, resolve_roots
from dupaudit.engine.model import CNN_MIN_SIMILARITY
from dupaudit.engine.pipeline import scan
from dupaudit.sample import procedural_image

runner = CliRunner()
STRICT = 0.999  # above every unrelated pair under the seeded random weights, below the copy's ~0.99995


@pytest.fixture(autouse=True)
def no_model_anywhere(tmp_path, monkeypatch):
    """Neither the environment nor a real torch hub cache may supply weights behind a test's back."""
    monkeypatch.delenv(embed.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mnv3s-random.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    """orig.jpg, its copy upscaled to 192 px and saved as PNG (other bytes, other pixels), two unrelated images."""
    folder = tmp_path / "images"
    folder.mkdir()
    procedural_image(1).save(folder / "orig.jpg", quality=95)
    Image.open(folder / "orig.jpg").convert("RGB").resize((192, 192), Image.LANCZOS).save(folder / "orig_big.png")
    procedural_image(2).save(folder / "other.jpg", quality=95)
    procedural_image(3).save(folder / "third.jpg", quality=95)
    return folder


def _groups(report) -> list[set[str]]:
    return [{m.path for m in g.members} for g in report.groups]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_resized_copy_is_grouped_and_unrelated_images_are_not(weights, images):
    report = scan(images, method="cnn", model=weights, min_similarity=STRICT, use_cache=False)
    assert _groups(report) == [{"orig.jpg", "orig_big.png"}]
    assert report.groups[0].kind == "near"
    settings = report.settings
    assert (settings.method, settings.min_similarity, settings.verify) == ("cnn", STRICT, False)
    # The same search with a loose threshold joins everything: the strict answer above is the threshold's doing.
    loose = scan(images, method="cnn", model=weights, min_similarity=0.5, use_cache=False)
    assert _groups(loose) == [{"orig.jpg", "orig_big.png", "other.jpg", "third.jpg"}]


def test_copy_has_cosine_near_one_through_the_api(weights, images):
    records, _ = discover(resolve_roots(images, []))
    embedded = embed.embed_records(records, embed.find_weights(weights))
    vectors = {r.path: v for r, v in zip(records, embedded.vectors)}
    assert embedded.vectors.shape == (4, embed.DIMENSIONS) and embedded.valid.all()
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=2e-3)
    assert float(vectors["orig.jpg"] @ vectors["orig_big.png"]) > 0.9995
    assert float(vectors["orig.jpg"] @ vectors["other.jpg"]) < STRICT


def test_default_threshold_is_imagededups(weights, images):
    report = scan(images, method="cnn", model=weights, use_cache=False)
    assert report.settings.min_similarity == CNN_MIN_SIMILARITY == 0.90


def test_missing_weights_says_how_to_supply_them(images, tmp_path):
    result = _invoke("scan", images, "--method", "cnn", "--no-cache")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "as --model or DUPAUDIT_CNN_MODEL=PATH" in message  # the parameter spelled as the flag
    assert "mobilenet_v3_small-047dcff4.pth" in message  # the torch hub cache file it looked for
    assert "Traceback" not in result.output

    result = _invoke("scan", images, "--method", "cnn", "--no-cache", "--model", tmp_path / "absent.pth")
    assert result.exit_code == 2 and "absent.pth: no such weights file" in " ".join(result.output.split())


def test_weights_from_environment_and_hub_cache(monkeypatch, tmp_path):
    env_file, hub_file = tmp_path / "env.pth", embed.hub_cache_path()
    env_file.write_bytes(b"x")
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"y")
    assert embed.find_weights().source == "the torch hub cache"
    monkeypatch.setenv(embed.ENV_VAR, str(env_file))
    assert embed.find_weights().path == str(env_file)
    assert embed.find_weights(hub_file).source == "model"  # the parameter wins over the environment


def test_missing_torch_names_the_extra(images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if not installed
    (tmp_path / "some.pth").write_bytes(b"whatever")
    result = _invoke("scan", images, "--method", "cnn", "--no-cache", "--model", tmp_path / "some.pth")
    assert result.exit_code == 2
    assert "pip install 'dupaudit[cnn]'" in result.output
    assert "Traceback" not in result.output


def test_hash_settings_are_refused_with_cnn(images):
    result = _invoke("scan", images, "--method", "cnn", "--threshold", "4", "--no-cache")
    assert result.exit_code == 2 and "--min-similarity" in result.output


@pytest.mark.parametrize(
    "content, words",
    [(b"not a model at all", "not a file of plain tensors"), ("tensor", "does not fit mobilenet_v3_small")],
)
def test_unusable_weights_file_is_a_clear_error(weights, images, tmp_path, content, words):
    import torch

    path = tmp_path / "bad.pth"
    if content == "tensor":
        torch.save({"weight": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    result = _invoke("scan", images, "--method", "cnn", "--no-cache", "--model", path)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_warm_rescan_reads_embeddings_from_the_cache(weights, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache.sqlite"
    built = []
    real_build = embed.build_encoder
    monkeypatch.setattr(embed, "build_encoder", lambda w: built.append(w.path) or real_build(w))
    first = scan(images, method="cnn", model=weights, min_similarity=STRICT, cache_path=cache)
    assert len(built) == 1

    def refuse(_weights):
        raise AssertionError("the network ran again on unchanged files")

    monkeypatch.setattr(embed, "build_encoder", refuse)
    # Another threshold: the whole-scan answer cannot be reused, so this searches the cached embeddings again.
    again = scan(images, method="cnn", model=weights, min_similarity=STRICT + 0.0005, cache_path=cache)
    assert _groups(again) == _groups(first) == [{"orig.jpg", "orig_big.png"}]

    records, _ = discover(resolve_roots(images, []))
    from dupaudit.engine.cache import FingerprintCache

    with FingerprintCache(cache) as opened:
        embedded = embed.embed_records(records, embed.find_weights(weights), cache=opened)
    assert (embedded.computed, embedded.cache_hits) == (0, 4)

    # Other weights (another digest) are not served the old embeddings.
    other = tmp_path / "other.pth"
    other.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(AssertionError, match="ran again"):
        scan(images, method="cnn", model=other, min_similarity=STRICT, cache_path=cache)


def test_similar_pairs_is_exact_and_inclusive():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 32)).astype(np.float32)
    vectors[200:260] = vectors[:60] + 0.05 * rng.normal(size=(60, 32)).astype(np.float32)  # planted near pairs
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    for threshold in (0.3, 0.9, 0.99):
        first, second, score = embed.similar_pairs(vectors, threshold)
        i, j = np.nonzero(np.triu(similarity >= threshold, k=1))
        assert set(zip(first.tolist(), second.tolist())) == set(zip(i.tolist(), j.tolist()))
        assert (first < second).all() and (score >= threshold).all()
    # Inclusive: a threshold equal to a pair's own score (as faiss computes it) keeps it.
    first, second, score = embed.similar_pairs(vectors, 0.9)
    own = float(score[(first == 0) & (second == 200)][0])
    first, second, score = embed.similar_pairs(vectors, own)
    assert (0, 200) in set(zip(first.tolist(), second.tolist())) and score.min() >= np.float32(own)
    # Invalid rows (files that could not be decoded) take part in no pair.
    valid = np.ones(400, dtype=bool)
    valid[0] = False
    first, second, _ = embed.similar_pairs(vectors, 0.9, valid=valid)
    assert 0 not in first.tolist() + second.tolist()
    # Above exact_limit the inverted-file index still finds the planted pairs.
    first, second, _ = embed.similar_pairs(vectors, 0.9, exact_limit=100)
    assert {(k, 200 + k) for k in range(60)} <= set(zip(first.tolist(), second.tolist()))


def test_preprocessing_is_imagededups_transform(images):
    pytest.importorskip("torchvision")
    from torchvision import transforms

    # imagededup.utils.models.MobilenetV3.transform, applied to the RGB image as imagededup loads it
    reference = transforms.Compose(
        [
            transforms.Resize((256, 256)),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    for name in ("orig.jpg", "orig_big.png"):
        expected = reference(Image.open(images / name).convert("RGB")).numpy()
        assert np.allclose(embed.preprocess(str(images / name)), expected, atol=1e-5)


def _containers(images: Path, base: Path) -> dict[str, Path]:
    """The four images of `images` as a tar shard, a Parquet file (HF's image struct) and a CSV manifest."""
    import io
    import tarfile

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    files = sorted(images.iterdir())
    base.mkdir()
    with tarfile.open(base / "shard-000000.tar", "w") as tar:
        for path in files:
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            tar.addfile(info, io.BytesIO(path.read_bytes()))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    column = pa.array([{"bytes": p.read_bytes(), "path": p.name} for p in files], type=image_type)
    pq.write_table(pa.table({"image": column}), base / "images.parquet")
    (base / "manifest.csv").write_text("path\n" + "".join(f"{p}\n" for p in files))
    return {
        "webdataset": base / "shard-000000.tar",
        "parquet": base / "images.parquet",
        "manifest": base / "manifest.csv",
    }


@pytest.mark.parametrize("form", ["webdataset", "parquet", "manifest"])
def test_cnn_reads_containers_as_the_folder(weights, images, tmp_path, form, monkeypatch):
    """The embeddings are made from the items' bytes, read again where they live: the folder's groups, and a
    rescan with another threshold takes every embedding from the cache (keyed by content)."""
    target = _containers(images, tmp_path / "forms")[form]
    cache = tmp_path / "cache.sqlite"
    report = scan(str(target), method="cnn", model=weights, min_similarity=STRICT, cache_path=cache, jobs=1)
    stems = [{p.rsplit("/", 1)[-1].split(".")[0] for p in group} for group in _groups(report)]
    if form == "parquet":  # rows are named by number: images.parquet#N, the files in name order
        names = [p.stem for p in sorted(images.iterdir())]
        stems = [{names[int(p.rsplit("#", 1)[1])] for p in group} for group in _groups(report)]
    assert stems == [{"orig", "orig_big"}]
    assert report.groups[0].kind == "near" and report.roots[0].source == form
    loose = scan(str(target), method="cnn", model=weights, min_similarity=0.5, use_cache=False, jobs=1)
    assert len(loose.groups) == 1 and len(loose.groups[0].members) == 4  # the strict answer is the threshold's

    def refuse(_weights):
        raise AssertionError("the network ran again on unchanged items")

    monkeypatch.setattr(embed, "build_encoder", refuse)
    again = scan(str(target), method="cnn", model=weights, min_similarity=STRICT + 0.0005, cache_path=cache, jobs=1)
    assert _groups(again) == _groups(report)


def test_cnn_marks_unreadable_container_items_invalid(weights, tmp_path):
    """An item whose bytes cannot be had again (here: absent from the source) is embedded as invalid, never as
    a zero vector that could pair."""
    from dupaudit.engine.model import ImageRecord

    records = [ImageRecord("train", "x.jpg", None, 1, 0, "webdataset:file:///nowhere::x.jpg")]
    embedded = embed.embed_records(records, embed.find_weights(weights), inputs=lambda todo: iter(()))
    assert not embedded.valid.any() and embedded.computed == 1
