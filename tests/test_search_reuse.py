"""A warm rescan reuses the last answer only when nothing it depends on changed."""

from __future__ import annotations

import importlib
import os
import pickle
import sqlite3

import pytest

from dupaudit.engine.cache import FingerprintCache
from dupaudit.formats.json import render
from dupaudit.sample import make_sample

scan_module = importlib.import_module("dupaudit.engine.pipeline")


@pytest.fixture
def data(tmp_path):
    return make_sample(tmp_path / "data").root


def test_unchanged_rescan_reuses_the_answer_and_reports_the_same(data, cache_file, full_searches):
    calls = full_searches
    cold = scan_module.scan(data, cache_path=cache_file)
    warm = scan_module.scan(data, cache_path=cache_file)
    assert len(calls) == 1  # the warm scan neither fingerprinted nor searched
    assert warm.decoded == 0 and warm.timings["search"] == 0.0
    assert render(warm) == render(cold) == render(scan_module.scan(data, use_cache=False))


def test_other_settings_or_a_changed_file_recompute(data, cache_file, full_searches):
    calls = full_searches
    scan_module.scan(data, cache_path=cache_file)
    tighter = scan_module.scan(data, cache_path=cache_file, threshold=2, verify=False)
    assert len(calls) == 2
    assert render(tighter) == render(scan_module.scan(data, use_cache=False, threshold=2, verify=False))
    target = next(data.glob("train/*/0003.jpg"))
    target.write_bytes(next(data.glob("test/*/0001.jpg")).read_bytes())  # now an exact copy of a test image
    os.utime(target, ns=(7, 7))
    changed = scan_module.scan(data, cache_path=cache_file)
    assert len(calls) == 4  # the uncached comparison above counts too
    assert changed.decoded == 0  # its new bytes are a cached file's: found by content
    assert render(changed) == render(scan_module.scan(data, use_cache=False))


def test_an_unreadable_or_foreign_answer_is_recomputed_not_trusted(data, cache_file, monkeypatch):
    cold = scan_module.scan(data, cache_path=cache_file)
    db = sqlite3.connect(cache_file)
    (key,) = db.execute("SELECT key FROM results").fetchone()
    # a pickle naming a callable is how a planted cache file would run code: refused
    for blob in (b"not a pickle", pickle.dumps(((), (os.system,)))):
        with db:
            db.execute("UPDATE results SET value = ? WHERE key = ?", (blob, key))
        with FingerprintCache(cache_file) as cache:
            assert cache.load_result(key) is None
        assert render(scan_module.scan(data, cache_path=cache_file)) == render(cold)
    db.close()


def test_a_renamed_or_added_file_is_noticed_without_decoding_the_others(data, cache_file, full_searches):
    calls = full_searches
    scan_module.scan(data, cache_path=cache_file)
    source = next(data.glob("train/*/0003.jpg"))
    source.rename(source.with_name("renamed.jpg"))  # same size and mtime, another name
    (data / "train" / source.parent.name / "notes.txt").write_text("not an image")
    renamed = scan_module.scan(data, cache_path=cache_file)
    assert len(calls) == 2 and renamed.decoded == 0  # the renamed file is found by its content, not decoded
    assert render(renamed) == render(scan_module.scan(data, use_cache=False))
