"""Stores that refuse, fail for a while, or always fail, served by http.server on 127.0.0.1 (started here), and
moto's S3 server enforcing credentials (its own process, started here): a refused source is one line and exit 2,
a refused or failing item is skipped with its reason, a transient failure is retried with backoff; file:// URLs
read as paths; a missing cloud filesystem names the pip line; a corrupt tar header is caught."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import CIFAR, need
from sources_support import as_manifests, as_webdataset, pick_images
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.engine.pipeline import scan
from dupaudit.engine.sources import storage
from dupaudit.formats.json import to_dict

runner = CliRunner()


@pytest.fixture(scope="module")
def images():
    need(CIFAR)
    return pick_images(CIFAR, per_class=6, test_per_class=1)


class _Store(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; paths under /denied/ answer 403, under /flaky/N/ 503 for the first N requests of each
    file, under /down/ always 503. Every request is counted."""

    counts: Counter = Counter()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        type(self).counts[self.path] += 1
        parts = self.path.split("/")
        if parts[1] == "denied":
            return self._fail(403)
        if parts[1] == "down":
            return self._fail(503)
        if parts[1] == "flaky":
            if type(self).counts[self.path] <= int(parts[2]):
                return self._fail(503)
            self.path = "/" + "/".join(parts[3:])
        super().do_HEAD() if head else super().do_GET()

    def _fail(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def store(images, tmp_path_factory):
    """(base URL, served folder): files/<stem>.jpg of the images, served with the failure paths above."""
    folder = tmp_path_factory.mktemp("store")
    as_manifests(images, folder)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Handler(_Store):
        counts: Counter = Counter()

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", folder, Handler.counts
    server.shutdown()


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch):
    monkeypatch.setattr(storage, "BACKOFF_S", 0.01)  # the same number of attempts, without the waits


def _manifest(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "urls.csv"
    path.write_text("path,label\n" + "".join(f"{row},cat\n" for row in rows))
    return path


def test_transient_failures_are_retried_and_lasting_ones_skip_the_item(store, images, tmp_path):
    pytest.importorskip("aiohttp")
    url, _, counts = store
    first, second, third = (f"files/{i.stem}.jpg" for i in images[:3])
    rows = [f"{url}/flaky/2/{first}", f"{url}/down/{second}", f"{url}/denied/{third}", f"{url}/{third}"]
    report = to_dict(scan(str(_manifest(tmp_path, rows)), use_cache=False, jobs=1))
    assert report["summary"]["images"] == 2  # the flaky one after two failures, and the plain one
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert skipped == {rows[1]: "HTTP 503", rows[2]: "HTTP 403 (access denied)"}
    assert counts[f"/flaky/2/{first}"] == 3  # two failures, then the bytes
    assert counts[f"/down/{second}"] == storage.RETRIES + 1  # the batch, then RETRIES attempts of its own
    assert counts[f"/denied/{third}"] == 1  # a refusal is not retried


def test_a_refused_or_failing_source_is_one_line_and_exit_2(store, tmp_path):
    pytest.importorskip("aiohttp")
    url, _, counts = store
    for where, expect in (
        (f"{url}/denied/manifest.csv", "HTTP 403 (access denied)"),
        (f"{url}/down/manifest.csv", "HTTP 503"),
    ):
        result = runner.invoke(app, ["scan", where, "--no-cache", "-q"])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert where in result.output and expect in result.output, result.output
    flaky = runner.invoke(app, ["scan", f"{url}/flaky/1/manifest.csv", "--no-cache", "-q", "-f", "json"])
    assert flaky.exit_code == 0, flaky.output  # the manifest itself, after one failure


@pytest.fixture
def s3_with_auth(monkeypatch, request):
    """moto's S3 server on 127.0.0.1 enforcing authentication (INITIAL_NO_AUTH_ACTION_COUNT=0), in its own
    process, and a client holding credentials it does not know."""
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    request.addfinalizer(server.kill)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("moto's server did not start")
            time.sleep(0.2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps filesystems by their arguments, not the environment
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)


def test_s3_refusing_the_credentials_is_one_line_and_exit_2(s3_with_auth):
    for target in ("s3://bucket/shards", "s3://bucket/shards/train-000000.tar", "s3://bucket/manifest.csv"):
        result = runner.invoke(app, ["scan", target, "--no-cache", "-q"])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
        assert f"{target}: access denied (check the credentials)" in result.output, result.output


def test_file_urls_read_as_paths(images, tmp_path):
    shards = as_webdataset(images, tmp_path / "shards")
    manifest, _ = as_manifests(images, tmp_path / "manifests")
    for path in (shards, manifest):
        by_path = to_dict(scan(str(path), use_cache=False, jobs=1))
        by_url = to_dict(scan(path.as_uri(), use_cache=False, jobs=1))
        assert by_url["summary"] == by_path["summary"] and by_url["groups"] == by_path["groups"]
        assert by_url["summary"]["images"] == len(images)


@pytest.mark.parametrize(
    ("url", "module"),
    [
        ("gs://bucket/data", "gcsfs"),
        ("az://container/data", "adlfs"),
        ("hf://datasets/owner/name", "huggingface_hub"),
        ("s3://bucket/data", "s3fs"),
        ("https://example.org/manifest.csv", "aiohttp"),
    ],
)
def test_a_missing_cloud_filesystem_names_the_pip_line(url, module):
    """With the filesystem's package unimportable (as without the cloud extra), one line names the extra."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from dupaudit.cli import main\n"
        f"sys.argv = ['dupaudit', 'scan', {url!r}, '--no-cache', '-q']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert len(output.splitlines()) == 1 and "pip install 'dupaudit[cloud]'" in output, output


def test_a_corrupt_tar_header_is_caught_by_its_checksum(tmp_path):
    """The lean tar reader checks each header's checksum (Adler-32 first, the exact sum when they disagree): a
    flipped byte in a member's name makes the shard 'truncated or corrupt', after the samples before it."""
    import io
    import tarfile

    from dupaudit.engine.sources import open_source
    from dupaudit.engine.sources.webdataset import _checksum_ok

    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("a.cls", "b.cls", "c.cls"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"1"))
    data = bytearray(path.read_bytes())
    headers = [bytes(data[i : i + 512]) for i in (0, 1024, 2048)]
    assert all(_checksum_ok(h) for h in headers)
    data[1024] ^= 0x01  # the second header's first name byte
    assert not _checksum_ok(bytes(data[1024:1536]))
    path.write_bytes(bytes(data))
    source = open_source(str(path))
    items = [item for partition in source.partitions() for item in source.read(partition)]
    assert [i.id for i in items] == ["s.tar"]  # the shard, with its reason (sample a held no image)
    assert items[0].error is not None and items[0].error.startswith("truncated or corrupt tar shard: bad checksum")


@pytest.mark.parametrize("chunk", [512, 1000, 4096, 1 << 22])
def test_the_tar_reader_gives_tarfiles_members_whatever_its_chunk_size(tmp_path, monkeypatch, chunk):
    """The lean tar reader parses a shard from chunks of _CHUNK bytes: members that end past a chunk, or are larger
    than one, come out whole and in order, as tarfile reads them (links and folders have no bytes: left out); a
    shard cut inside a member gives the members before it, then a tarfile.ReadError."""
    import io
    import random
    import tarfile

    import fsspec

    from dupaudit.engine.sources import webdataset

    path = tmp_path / "s.tar"
    rng = random.Random(3)
    with tarfile.open(path, "w") as tar:
        for number, size in enumerate([0, 1, 511, 512, 513, 3000, 10_000, 5]):
            info = tarfile.TarInfo(f"d/m{number}.bin")
            info.size = size
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
            if number == 3:
                folder = tarfile.TarInfo("d/sub")
                folder.type = tarfile.DIRTYPE
                tar.addfile(folder)
    monkeypatch.setattr(webdataset, "_CHUNK", chunk)
    fs = fsspec.filesystem("file")
    with tarfile.open(path) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
        cut_at = tar.getmember("d/m6.bin").offset_data + 4000
    assert list(webdataset._shard_members(fs, str(path))) == expected
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[:cut_at])
    read = []
    with pytest.raises(tarfile.ReadError):
        for member in webdataset._shard_members(fs, str(cut)):
            read.append(member)
    assert read == expected[:6]
