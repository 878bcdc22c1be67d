"""The scan on a Dask LocalCluster gives the single-process answer: the sharded exact search pair for pair, the
whole JSON report on real CIFAR-10 images with planted copies, after a worker is killed, and when resumed."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR, need
from PIL import Image

distributed = pytest.importorskip("distributed")

from dupaudit.cluster import DaskRunner  # noqa: E402
from dupaudit.cluster.search import sharded_pairs_within  # noqa: E402
from dupaudit.engine.pipeline import scan  # noqa: E402
from dupaudit.engine.search import pairs_within  # noqa: E402
from dupaudit.formats import json as json_format  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        yield c


def _planted_hashes(count: int, planted: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (count, 8), dtype=np.uint8)
    sources = rng.choice(count, planted, replace=False)
    targets = rng.choice(count, planted, replace=False)
    bits = np.unpackbits(hashes[sources], axis=1)
    for row in range(planted):
        bits[row, rng.choice(64, int(rng.integers(0, 12)), replace=False)] ^= 1
    hashes[targets] = np.packbits(bits, axis=1)
    return hashes


def test_sharded_search_equals_single_process_search(client):
    hashes = _planted_hashes(200_000, 4_000)
    expected = pairs_within(hashes, 10)
    assert len(expected[0]) > 3_000  # the planted pairs are there to be found
    # shards against shards, and one self-search cut into pieces by the rows it probes from
    for shards, pieces in ((3, 2), (1, 3)):
        got = sharded_pairs_within(client, hashes, 10, shards=shards, pieces=pieces)
        for want, have in zip(expected, got):
            np.testing.assert_array_equal(want, have)
    mirrored = hashes.copy()
    mirrored[:, 3] ^= 0b101  # queries that are other rows' near copies, as the mirrored hashes are
    mirrored[:50] = hashes[:50]  # a row's own hash among its queries: never a pair with itself
    expected = pairs_within(hashes, 8, queries=mirrored)
    got = sharded_pairs_within(client, hashes, 8, queries=mirrored, shards=2, pieces=3)
    assert len(expected[0]) > 0
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(want, have)


@pytest.mark.parametrize("count", [150, 120_000])  # faiss's brute force, then multi-index hashing
def test_the_pieces_of_a_self_search_are_disjoint_and_make_the_whole(count):
    hashes = _planted_hashes(count, max(30, count // 20))
    whole = pairs_within(hashes, 10, threads=1)
    edges = [0, count // 3, count // 3, count // 2, count]  # an empty piece too
    parts = [pairs_within(hashes, 10, threads=1, owners=(a, b)) for a, b in zip(edges, edges[1:])]
    first, second, distance = (np.concatenate([p[k] for p in parts]) for k in range(3))
    assert len(first) == len(whole[0]) > 0  # disjoint: no pair twice
    order = np.lexsort((second, first))
    for want, have in zip(whole, (first[order], second[order], distance[order])):
        np.testing.assert_array_equal(want, have)


def _dataset(tmp_path: Path, per_class: int = 300) -> Path:
    """CIFAR-10 test images in train/test splits, with exact, re-encoded, resized and leaked copies planted."""
    need(CIFAR)
    root = tmp_path / "data"
    classes = sorted(p.name for p in (CIFAR / "test").iterdir())[:4]
    for label in classes:
        files = sorted((CIFAR / "test" / label).iterdir())[:per_class]
        for split, chunk in (("train", files[: per_class * 2 // 3]), ("test", files[per_class * 2 // 3 :])):
            target = root / split / label
            target.mkdir(parents=True, exist_ok=True)
            for f in chunk:
                shutil.copy(f, target / f.name)
        train = root / "train" / label
        originals = sorted(train.iterdir())[:12]
        for i, f in enumerate(originals):
            image = Image.open(f).convert("RGB")
            if i % 4 == 0:
                shutil.copy(f, train / f"exact_{f.name}")
            elif i % 4 == 1:
                image.save(train / f"q60_{f.stem}.jpg", quality=60)
            elif i % 4 == 2:
                image.resize((48, 48)).save(train / f"big_{f.stem}.png")
            else:
                image.save(root / "test" / label / f"leak_{f.stem}.png")
    return root


def _report_bytes(root: Path, **kwargs) -> str:
    return json_format.render(scan(root, use_cache=False, jobs=2, **kwargs))


def test_cluster_scan_equals_single_process_scan(tmp_path, client):
    root = _dataset(tmp_path)
    runner = DaskRunner(client, str(tmp_path / "work"), slice_records=200)
    single = _report_bytes(root, flips=True)
    assert '"kind": "exact"' in single or '"exact_copies": 1' in single
    assert _report_bytes(root, flips=True, runner=runner) == single
    assert runner.stats["computed"] == runner.stats["partitions"] > 1


def test_the_workers_verify_and_the_driver_reads_only_paired_thumbnails(tmp_path, client, monkeypatch):
    """The candidate pairs are scored on the workers (verify is broken in this, the driver's, process) and the
    driver reads the thumbnails of paired images only; --rotations' hashes of rotated thumbnails come from the
    workers too. The report is still the single-process one."""
    from dupaudit.cluster import thumbs as thumbs_module
    from dupaudit.engine import verify as verify_module

    root = _dataset(tmp_path, per_class=150)
    single = _report_bytes(root, flips=True, rotations=True)
    read: list[int] = []
    real_read = thumbs_module.read_thumbs

    def counted(urls, part, pos, storage_options):
        read.append(len(part))
        return real_read(urls, part, pos, storage_options)

    def not_here(*args, **kwargs):
        raise AssertionError("candidate pairs verified on the driver")

    monkeypatch.setattr(thumbs_module, "read_thumbs", counted)  # the driver's calls only (workers are processes)
    monkeypatch.setattr(verify_module, "verify", not_here)
    runner = DaskRunner(client, str(tmp_path / "work"), slice_records=100)
    assert _report_bytes(root, flips=True, rotations=True, runner=runner) == single
    images = sum(1 for p in root.rglob("*") if p.is_file())
    assert len(read) == 1 and 0 < read[0] < images / 4  # one read, of the images in a pair


def test_rows_from_the_drivers_cache_are_verified_on_the_workers(tmp_path, client):
    """A cluster scan after files were added: the known files come from the driver's fingerprint cache (their
    thumbnails written to the work directory for the workers), the new ones from the workers; same report."""
    root = _dataset(tmp_path, per_class=150)
    cache = tmp_path / "cache.sqlite"
    scan(root, cache_path=cache, jobs=2)
    train = root / "train" / sorted(p.name for p in (root / "train").iterdir())[0]
    source = sorted(train.iterdir())[20]
    Image.open(source).convert("RGB").save(train / f"again_{source.stem}.png")  # new: a pixel copy
    runner = DaskRunner(client, str(tmp_path / "work"))
    got = json_format.render(scan(root, cache_path=cache, jobs=2, runner=runner))
    assert runner.stats["partitions"] == 1  # only the new file was fingerprinted by the workers
    assert list((tmp_path / "work" / "thumbs").glob("cached-*.parquet"))
    assert got == _report_bytes(root)


def test_cluster_scan_of_webdataset_shards_equals_single_process_scan(tmp_path, client):
    from sources_support import as_webdataset, pick_images

    need(CIFAR)
    shards = as_webdataset(pick_images(CIFAR, per_class=30, test_per_class=10), tmp_path / "shards", per_shard=40)
    runner = DaskRunner(client, str(tmp_path / "work"))
    single = _report_bytes(shards)
    assert '"source": "webdataset"' in single and '"label_conflict": true' in single
    assert _report_bytes(shards, runner=runner) == single


def test_webdataset_shards_write_their_tables_and_a_rerun_computes_only_new_shards(tmp_path, client):
    """Each shard's task writes its fingerprint table to the work directory: a rerun computes none, and a shard
    added since computes exactly its own; the report is the single-process one each time."""
    from sources_support import as_webdataset, pick_images

    need(CIFAR)
    shards = as_webdataset(pick_images(CIFAR, per_class=20, test_per_class=8), tmp_path / "shards", per_shard=30)
    held = sorted((shards / "train").glob("shard-*.tar"))[-1]
    aside = tmp_path / held.name
    held.rename(aside)  # not there yet
    work = tmp_path / "work"
    runner = DaskRunner(client, str(work))
    before = _report_bytes(shards, runner=runner)
    tables = sorted((work / "fingerprints").glob("part-*.parquet"))
    assert len(tables) == runner.stats["computed"] == runner.stats["partitions"] > 2
    assert _report_bytes(shards, runner=runner) == before
    assert runner.stats == {"computed": 0, "reused": len(tables), "partitions": len(tables)}
    aside.rename(held)  # a new shard
    after = _report_bytes(shards, runner=runner)
    assert runner.stats == {"computed": 1, "reused": len(tables), "partitions": len(tables) + 1}
    assert after == _report_bytes(shards) != before


@pytest.mark.parametrize("form", ["parquet", "manifest"])
def test_parquet_and_manifest_partitions_are_reused_until_their_items_change(tmp_path, client, form):
    """Parquet row groups are named by their file's version; a manifest slice by its items' bytes, so an image it
    lists that changed (the manifest did not) is fingerprinted again. Same report as the single process."""
    from sources_support import as_manifests, as_parquet, pick_images

    need(CIFAR)
    images = pick_images(CIFAR, per_class=8, test_per_class=3)
    target = as_parquet(images, tmp_path / "pq")[0] if form == "parquet" else as_manifests(images, tmp_path / "m")[0]
    runner = DaskRunner(client, str(tmp_path / "work"))
    first = _report_bytes(target, runner=runner)
    assert first == _report_bytes(target)
    partitions = runner.stats["partitions"]
    assert runner.stats["computed"] == partitions >= 1
    assert _report_bytes(target, runner=runner) == first
    assert runner.stats == {"computed": 0, "reused": partitions, "partitions": partitions}
    if form == "manifest":
        listed = sorted((tmp_path / "m" / "files").iterdir())
        listed[0].write_bytes(listed[1].read_bytes())  # an exact copy now, under the same name
        changed = _report_bytes(target, runner=runner)
        assert changed == _report_bytes(target) != first
        assert runner.stats["computed"] == 1


def test_the_workers_verify_webdataset_shards_and_the_driver_keeps_no_thumbnails(tmp_path, client, monkeypatch):
    """As for folders: verify is broken in the driver's process, the driver reads the thumbnails of paired images
    only, and the fingerprints it holds have none; the report is the single-process one."""
    from sources_support import as_webdataset, pick_images

    from dupaudit.cluster import thumbs as thumbs_module
    from dupaudit.engine import verify as verify_module
    from dupaudit.engine.sources import scanning

    need(CIFAR)
    shards = as_webdataset(pick_images(CIFAR, per_class=30, test_per_class=10), tmp_path / "shards", per_shard=40)
    single = _report_bytes(shards, flips=True, rotations=True)
    read: list[int] = []
    real_read = thumbs_module.read_thumbs

    def counted(urls, part, pos, storage_options):
        read.append(len(part))
        return real_read(urls, part, pos, storage_options)

    def not_here(*args, **kwargs):
        raise AssertionError("candidate pairs verified on the driver")

    held: list = []
    real_sources = scanning.fingerprint_sources

    def kept(*args, **kwargs):
        result = real_sources(*args, **kwargs)
        held.extend(result.fingerprints)
        return result

    monkeypatch.setattr(thumbs_module, "read_thumbs", counted)  # the driver's calls only (workers are processes)
    monkeypatch.setattr(verify_module, "verify", not_here)
    monkeypatch.setattr(scanning, "fingerprint_sources", kept)
    runner = DaskRunner(client, str(tmp_path / "work"))
    assert _report_bytes(shards, flips=True, rotations=True, runner=runner) == single
    assert held and not any(f.thumb for f in held)
    assert len(read) == 1 and 0 < read[0] < len(held) / 4  # one read, of the images in a pair


def test_resumed_run_computes_only_missing_partitions(tmp_path, client):
    root = _dataset(tmp_path, per_class=150)
    work = tmp_path / "work"
    runner = DaskRunner(client, str(work), slice_records=100)
    first = _report_bytes(root, runner=runner)
    partitions = sorted((work / "fingerprints").glob("part-*.parquet"))
    assert len(partitions) == runner.stats["partitions"] >= 4
    partitions[1].unlink()  # as if the run had died before this task finished
    assert _report_bytes(root, runner=runner) == first
    assert runner.stats == {"computed": 1, "reused": len(partitions) - 1, "partitions": len(partitions)}


def test_a_killed_worker_costs_only_its_tasks(tmp_path, client):
    root = _dataset(tmp_path)
    expected = _report_bytes(root)
    work = tmp_path / "work"
    runner = DaskRunner(client, str(work), slice_records=40)  # many small tasks: some run after the kill
    pids = list(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_one_worker_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list((work / "fingerprints").glob("part-*.parquet"))) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_mid_run)
    killer.start()
    got = _report_bytes(root, runner=runner)
    killer.join()
    assert killed, "the worker was not killed during fingerprinting"
    assert runner.stats["computed"] + runner.stats["reused"] == runner.stats["partitions"]
    assert got == expected
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker for the next test


class _Recorder:
    """A progress sink that keeps what it was told, the optional status lines included."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int]] = []
        self.advanced: dict[str, int] = {}
        self.statuses: list[str] = []

    def start(self, stage: str, total: int) -> None:
        self.stages.append((stage, total))
        self.advanced[stage] = 0

    def advance(self, count: int = 1) -> None:
        self.advanced[self.stages[-1][0]] += count

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def finish(self) -> None:
        pass


def test_the_cluster_reports_tasks_images_and_its_dashboard(tmp_path, client):
    from typer.testing import CliRunner

    from dupaudit.cli import app

    root = _dataset(tmp_path, per_class=60)
    images = sum(1 for p in root.rglob("*") if p.is_file())
    sink = _Recorder()
    scan(
        root,
        use_cache=False,
        jobs=2,
        runner=DaskRunner(client, str(tmp_path / "work"), slice_records=50),
        progress=sink,
    )
    stage, total = sink.stages[0]
    assert stage.startswith("fingerprinting on the cluster (http") and total == images
    assert sink.advanced[stage] == images
    tasks = -(-images // 50)
    assert sink.statuses[0] == f"0/{tasks} tasks" and sink.statuses[-1] == f"{tasks}/{tasks} tasks"
    result = CliRunner().invoke(
        app, ["scan", str(root), "--cluster", client.scheduler.address, "--workdir", str(tmp_path / "w2"), "--no-cache"]
    )
    assert result.exit_code in (0, 1), result.output
    assert "Dask dashboard: http" in result.output


def test_the_progress_bar_shows_the_rate_and_the_status():
    from dupaudit.cli.common import RichProgress
    from dupaudit.engine.progress import NullProgress, status

    bar = RichProgress()
    bar.start("fingerprinting", 100)
    try:
        bar.advance(10)
        time.sleep(0.05)
        bar.advance(10)
        status(bar, "1/5 tasks")
        fields = bar._progress.tasks[0].fields
        assert fields["status"] == "1/5 tasks" and fields["rate"].endswith("/s")
    finally:
        bar.finish()
    status(NullProgress(), "ignored")  # a sink without status() is fine


def test_unreachable_scheduler_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from dupaudit.cli import app

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "a"), "--cluster", "tcp://127.0.0.1:9", "--no-cache"])
    assert result.exit_code == 2, result.output
    assert "no Dask scheduler answered" in result.output
    assert "Traceback" not in result.output
