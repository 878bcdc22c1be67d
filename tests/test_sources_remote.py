"""Sources behind URLs, served by real servers on 127.0.0.1 that the tests start: S3 (moto's standalone server)
holding the Parquet and tar forms, and a manifest of http:// URLs served by http.server."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest
from conftest import CIFAR, need
from sources_support import as_manifests, as_parquet, as_webdataset, groups_by_content, pick_images

from dupaudit.engine.pipeline import scan
from dupaudit.formats.json import to_dict

pytest.importorskip("pyarrow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    need(CIFAR)
    base = tmp_path_factory.mktemp("remote")
    images = pick_images(CIFAR, per_class=20, test_per_class=8)
    parquet_root, stems = as_parquet(images, base / "hf")
    from sources_support import as_folder

    folder = as_folder(images, base / "folder")
    return {
        "base": base,
        "images": images,
        "parquet": parquet_root,
        "stems": stems,
        "shards": as_webdataset(images, base / "shards"),
        "folder": to_dict(scan(folder, use_cache=False, jobs=1)),
    }


@pytest.fixture(scope="module")
def s3(packed):
    """A moto S3 server on 127.0.0.1 with the Parquet and tar forms under s3://data/{hf,shards}/."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"})
    fs.mkdir("data")
    fs.put(str(packed["parquet"]), "data/hf", recursive=True)
    fs.put(str(packed["shards"]), "data/shards", recursive=True)
    yield fs
    patch.undo()
    server.stop()


@pytest.mark.parametrize("form", ["hf", "shards"])
def test_s3_gives_the_folder_answer(packed, s3, form, tmp_path):
    report = to_dict(scan(f"s3://data/{form}", cache_path=tmp_path / "c.sqlite", jobs=2))
    assert report["summary"] == packed["folder"]["summary"]
    assert groups_by_content(report, packed["stems"]) == groups_by_content(packed["folder"])
    assert {r["url"] for r in report["roots"]} == {f"s3://data/{form}"}
    # the second scan: the stored answer, keyed by the objects' ETags
    again = scan(f"s3://data/{form}", cache_path=tmp_path / "c.sqlite", jobs=2)
    assert again.decoded == 0 and to_dict(again) == report


@pytest.fixture(scope="module")
def http_root(packed):
    """http.server on 127.0.0.1 serving the flat files and manifests whose rows are http:// URLs."""
    csv_manifest, _ = as_manifests(packed["images"], packed["base"] / "web")
    port = _free_port()
    handler = functools.partial(_QuietHandler, directory=str(csv_manifest.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    rows = csv_manifest.read_text().splitlines()
    absolute = [rows[0]] + [f"{url}/{row}" for row in rows[1:]] + [f"{url}/files/absent.jpg,cat,train"]
    (csv_manifest.parent / "urls.csv").write_text("\n".join(absolute) + "\n")
    yield url, csv_manifest.parent
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_http_manifest_gives_the_folder_answer(packed, http_root, tmp_path):
    pytest.importorskip("aiohttp")
    url, folder = http_root
    report = to_dict(scan(str(folder / "urls.csv"), use_cache=False, jobs=2))  # a local manifest of URLs
    assert report["summary"]["images"] == packed["folder"]["summary"]["images"]
    assert report["summary"]["groups"] == packed["folder"]["summary"]["groups"]
    assert groups_by_content(report) == groups_by_content(packed["folder"])
    assert report["skipped"] == [{"root": "train", "path": f"{url}/files/absent.jpg", "reason": "not found"}]
    remote = to_dict(scan(f"{url}/manifest.csv", use_cache=False, jobs=1))  # the manifest itself by URL
    assert remote["summary"] == packed["folder"]["summary"]
    assert remote["roots"][0]["url"] == f"{url}/manifest.csv"
