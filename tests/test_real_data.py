"""Real data: distinct CIFAR-10 images give no false group; the formats corpus scans without a traceback."""

from __future__ import annotations

import json

from conftest import CIFAR, FORMATS, need
from typer.testing import CliRunner

from dupaudit import scan
from dupaudit.cli import app


def test_distinct_real_images_give_no_near_group(tmp_path, cache_file):
    need(CIFAR)
    # 300 real photographs: the first 30 test images of each class (checked by eye to be distinct photos).
    root = tmp_path / "distinct"
    for folder in sorted((CIFAR / "test").iterdir()):
        (root / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[:30]:
            (root / folder.name / path.name).symlink_to(path)
    report = scan(root, cache_path=cache_file)
    assert report.summary.images == 300
    assert report.groups == ()


def test_cifar_train_test_known_duplicates_found(cache_file):
    """A handful of ciFAIR-annotated train/test pairs that sit within the default radius are grouped as leaks."""
    need(CIFAR)
    report = scan(CIFAR, cache_path=cache_file)
    assert report.summary.images == 60000
    assert report.summary.leaked > 0 and report.summary.groups > 0
    leaked = {(m.root, m.path) for g in report.leak_groups for m in g.members}
    # ciFAIR lists test/airplane/0063.jpg as the same photo as train/airplane/2418.jpg (judgment 1).
    assert ("test", "airplane/0063.jpg") in leaked or report.settings.threshold < 10


def test_formats_corpus_scans_without_traceback(tmp_path):
    need(FORMATS)
    result = CliRunner().invoke(app, ["scan", str(FORMATS), "--no-cache", "-f", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    reasons = {s["path"]: s["reason"] for s in data["skipped"]}
    assert set(reasons) == {"mixed_images/ukbench09268_corrupt.jpg", "mixed_nested_images/ukbench09268_corrupt.jpg"}
    assert data["summary"]["images"] == 32
    # the JPEGs named .bmp/.png/.svg are recognised by content and grouped with the real JPEG
    kinds = {frozenset(m["path"] for m in g["members"]): g["kind"] for g in data["groups"]}
    assert any({"formats_images/ukbench09380.svg", "formats_images/ukbench09380.bmp"} <= members for members in kinds)
