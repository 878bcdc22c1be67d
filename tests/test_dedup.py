"""dedup plan -> apply to a quarantine -> undo: nothing lost, byte for byte, even when killed mid-way."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dupaudit import dedup as actions
from dupaudit.cli import app
from dupaudit.dedup import StalePlanError, apply_plan, make_plan, read_plan, undo, write_plan
from dupaudit.engine.pipeline import scan
from dupaudit.errors import InputError
from dupaudit.sample import make_sample, procedural_image

runner = CliRunner()


def checksums(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under folder (symlinks not followed)."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            result[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    make_sample(tmp_path / "data", per_class=4, test_per_class=2)
    return tmp_path / "data"


@pytest.fixture
def plan_path(dataset: Path, tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    result = runner.invoke(app, ["dedup", str(dataset), "--plan", str(path), "--no-cache", "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    return path


def dropped_paths(plan_file: Path) -> list[str]:
    data = json.loads(plan_file.read_text())
    roots = {r["name"]: r["tree"] for r in data["roots"]}
    return [f"{roots[f['root']]}/{f['path']}" for g in data["groups"] for f in g["drop"]]


def test_plan_is_readable_editable_json(plan_path: Path, dataset: Path) -> None:
    data = json.loads(plan_path.read_text())
    assert data["format"] == "dupaudit-plan" and data["version"] == 1
    assert data["summary"]["drop"] == len(dropped_paths(plan_path)) > 0
    for group in data["groups"]:
        assert len(group["keep"]) == 1  # default: keep one of each set of copies
        for item in group["keep"] + group["drop"]:
            path = Path(next(r["path"] for r in data["roots"] if r["name"] == item["root"])) / item["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"]
            assert path.stat().st_size == item["size"]
    # the planted exact copy is dropped or is the keeper of its group, never both
    names = {f["path"] for g in data["groups"] for f in g["drop"] + g["keep"]}
    assert "circle/copy_exact.jpg" in names


def test_round_trip_restores_every_file_byte_for_byte(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    before, before_mtimes = checksums(dataset), mtimes(dataset)
    quarantine = tmp_path / "quarantine"
    dropped = dropped_paths(plan_path)
    result = runner.invoke(app, ["dedup", "--apply", str(plan_path), "--quarantine", str(quarantine)])
    assert result.exit_code == 0, result.output
    after = checksums(dataset)
    moved = checksums(quarantine)
    assert set(after) == set(before) - set(dropped)
    assert {k: v for k, v in moved.items() if k != actions.JOURNAL_NAME} == {p: before[p] for p in dropped}
    assert all(after[p] == before[p] for p in after)

    # applying again is a no-op
    result = runner.invoke(app, ["dedup", "--apply", str(plan_path), "--quarantine", str(quarantine)])
    assert result.exit_code == 0, result.output
    assert checksums(dataset) == after

    journal = quarantine / actions.JOURNAL_NAME
    result = runner.invoke(app, ["undo", str(journal)])
    assert result.exit_code == 0, result.output
    assert checksums(dataset) == before
    assert mtimes(dataset) == before_mtimes
    assert [p for p in quarantine.rglob("*") if p.name != actions.JOURNAL_NAME] == []  # emptied, folders pruned
    # undo is idempotent
    result = runner.invoke(app, ["undo", str(quarantine)])
    assert result.exit_code == 0, result.output
    assert checksums(dataset) == before


def test_cross_filesystem_copy_verify_remove(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    before = checksums(dataset)
    quarantine = tmp_path / "q"
    plan = read_plan(plan_path)
    result = apply_plan(plan, quarantine, force_copy=True)
    assert result.moved == len(plan.drops) > 0
    assert not list(quarantine.rglob("*" + actions.PARTIAL_SUFFIX))
    assert set(checksums(dataset)) == set(before) - set(dropped_paths(plan_path))
    restored = undo(quarantine / actions.JOURNAL_NAME, force_copy=True)
    assert restored.restored == len(plan.drops) and not restored.problems
    assert checksums(dataset) == before


def _run_apply(
    plan_path: Path, quarantine: Path, fault: str | None, force_copy: bool = False, action: str = "apply"
) -> int:
    code = "import sys; from dupaudit import dedup as actions; " + (
        "actions.apply_plan(actions.read_plan(sys.argv[1]), sys.argv[2], force_copy=sys.argv[3] == '1')"
        if action == "apply"
        else "actions.undo(sys.argv[2], force_copy=sys.argv[3] == '1')"
    )
    env = dict(os.environ)
    env.pop(actions.FAULT_ENV, None)
    if fault:
        env[actions.FAULT_ENV] = fault
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(plan_path),
            str(quarantine / actions.JOURNAL_NAME) if action == "undo" else str(quarantine),
            "1" if force_copy else "0",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    return process.returncode


@pytest.mark.parametrize(
    "fault,force_copy",
    [
        ("apply:1:intent", False),  # journal record on disk, file untouched
        ("apply:2:moved", False),  # renamed, 'done' not yet written
        ("apply:2:intent", True),  # across filesystems: before the copy
        ("apply:1:copied", True),  # verified copy in the quarantine, source not yet removed
        ("apply:3:moved", True),  # source removed, 'done' not yet written
    ],
)
def test_sigkill_during_apply_then_resume_or_undo_loses_nothing(
    plan_path: Path, dataset: Path, tmp_path: Path, fault: str, force_copy: bool
) -> None:
    before = checksums(dataset)
    dropped = dropped_paths(plan_path)
    assert len(dropped) >= 3
    for finish in ("resume", "undo"):
        quarantine = tmp_path / f"q-{finish}"
        code = _run_apply(plan_path, quarantine, fault, force_copy)
        assert code == -signal.SIGKILL
        # between the kill and the recovery, every file exists somewhere with its bytes
        here, there = checksums(dataset), checksums(quarantine / "train") if (quarantine / "train").exists() else {}
        union = dict(here)
        union.update({f"train/{k}": v for k, v in there.items() if not k.endswith(actions.PARTIAL_SUFFIX)})
        assert union == before
        if finish == "resume":
            assert _run_apply(plan_path, quarantine, None, force_copy) == 0
            assert checksums(dataset) == {k: v for k, v in before.items() if k not in dropped}
            assert {f"train/{k}": v for k, v in checksums(quarantine / "train").items()} == {
                k: before[k] for k in dropped if k.startswith("train/")
            }
        code = _run_apply(plan_path, quarantine, None, force_copy, action="undo")
        assert code == 0
        assert checksums(dataset) == before


@pytest.mark.parametrize("fault", ["undo:1:intent", "undo:2:moved", "undo:1:copied"])
def test_sigkill_during_undo_then_undo_again(plan_path: Path, dataset: Path, tmp_path: Path, fault: str) -> None:
    before = checksums(dataset)
    quarantine = tmp_path / "q"
    assert _run_apply(plan_path, quarantine, None, force_copy=True) == 0
    assert _run_apply(plan_path, quarantine, fault, force_copy=True, action="undo") == -signal.SIGKILL
    assert _run_apply(plan_path, quarantine, None, force_copy=True, action="undo") == 0
    assert checksums(dataset) == before


def test_torn_last_journal_line_is_ignored(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    before = checksums(dataset)
    quarantine = tmp_path / "q"
    apply_plan(read_plan(plan_path), quarantine)
    with open(quarantine / actions.JOURNAL_NAME, "ab") as handle:
        handle.write(b'{"op":"move","i":9')  # a crash in the middle of writing a record
    assert undo(quarantine / actions.JOURNAL_NAME).restored == len(dropped_paths(plan_path))
    assert checksums(dataset) == before


@pytest.mark.parametrize("change", ["append", "touch", "remove-kept"])
def test_stale_plan_is_refused_and_moves_nothing(plan_path: Path, dataset: Path, tmp_path: Path, change: str) -> None:
    data = json.loads(plan_path.read_text())
    root_of = {r["name"]: Path(r["path"]) for r in data["roots"]}
    group = data["groups"][0]
    victim = group["keep" if change == "remove-kept" else "drop"][0]
    path = root_of[victim["root"]] / victim["path"]
    if change == "append":
        with open(path, "ab") as handle:
            handle.write(b"x")
    elif change == "touch":
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    else:
        path.rename(tmp_path / "moved-away")
    before = checksums(dataset)
    quarantine = tmp_path / "q"
    result = runner.invoke(app, ["dedup", "--apply", str(plan_path), "--quarantine", str(quarantine)])
    assert result.exit_code == 2
    assert "stale" in result.output and victim["path"] in result.output
    assert checksums(dataset) == before
    assert not quarantine.exists() or not any(quarantine.rglob("*.*g"))
    with pytest.raises(StalePlanError):
        apply_plan(read_plan(plan_path), quarantine)


def test_edited_plan_keeps_what_the_user_moved_to_keep(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    data = json.loads(plan_path.read_text())
    group = next(g for g in data["groups"] if g["drop"])
    rescued = group["drop"].pop(0)
    group["keep"].append(rescued)
    if len(data["groups"]) > 1 and data["groups"][-1] is not group:
        deleted = data["groups"].pop()  # a whole group deleted by hand: its files stay where they are
    else:
        deleted = {"drop": []}
    plan_path.write_text(json.dumps(data, indent=1))
    plan = read_plan(plan_path)
    apply_plan(plan, tmp_path / "q")
    root = Path(next(r["path"] for r in data["roots"] if r["name"] == rescued["root"]))
    assert (root / rescued["path"]).exists()
    for item in deleted["drop"]:
        assert (Path(next(r["path"] for r in data["roots"] if r["name"] == item["root"])) / item["path"]).exists()
    assert all(not Path(plan.abspath(f)).exists() for f in plan.drops)


def test_hostile_plan_edits_are_refused(plan_path: Path, tmp_path: Path) -> None:
    data = json.loads(plan_path.read_text())
    data["groups"][0]["drop"][0]["path"] = "../../etc/passwd"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="relative"):
        read_plan(bad)
    data = json.loads(plan_path.read_text())
    data["groups"][0]["keep"].append(dict(data["groups"][0]["drop"][0]))
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="twice"):
        read_plan(bad)
    bad.write_text("{not json")
    result = runner.invoke(app, ["dedup", "--apply", str(bad), "--quarantine", str(tmp_path / "q")])
    assert result.exit_code == 2


def test_quarantine_must_be_empty_and_outside_the_dataset(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    plan = read_plan(plan_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "someone-elses-file").write_text("hi")
    with pytest.raises(InputError, match="not empty"):
        apply_plan(plan, busy)
    with pytest.raises(InputError, match="inside root"):
        apply_plan(plan, dataset / "train" / "quarantine")
    apply_plan(plan, dataset / ".quarantine")  # a hidden folder is never scanned: allowed
    assert (dataset / ".quarantine" / actions.JOURNAL_NAME).exists()


def test_link_tree_and_list_hold_exactly_the_kept_files(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    everything = set(checksums(dataset))
    kept = everything - set(dropped_paths(plan_path))
    tree = tmp_path / "tree"
    listing = tmp_path / "kept.txt"
    result = runner.invoke(app, ["dedup", "--plan", str(plan_path), "--link-tree", str(tree), "--list", str(listing)])
    assert result.exit_code == 0, result.output
    links = {p.relative_to(tree).as_posix(): p for p in tree.rglob("*") if p.is_symlink()}
    assert set(links) == kept
    for relative, link in links.items():
        assert Path(os.readlink(link)) == dataset.resolve() / relative
    lines = listing.read_text().splitlines()
    assert len(lines) == len(kept)
    assert set(lines) == {str(dataset.resolve() / p) for p in kept}

    hard = tmp_path / "hard"
    result = runner.invoke(app, ["dedup", "--plan", str(plan_path), "--link-tree", str(hard), "--hardlinks", "-q"])
    assert result.exit_code == 0, result.output
    files = {p.relative_to(hard).as_posix(): p for p in hard.rglob("*") if p.is_file()}
    assert set(files) == kept
    assert all(p.stat().st_ino == (dataset / r).stat().st_ino for r, p in files.items())
    # an existing, non-empty folder is never written into
    result = runner.invoke(app, ["dedup", "--plan", str(plan_path), "--link-tree", str(hard)])
    assert result.exit_code == 2


def test_link_tree_straight_from_a_root(dataset: Path, tmp_path: Path) -> None:
    train = dataset / "train"
    tree = tmp_path / "tree"
    result = runner.invoke(app, ["dedup", str(train), "--link-tree", str(tree), "--no-cache", "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    # a single root (no splits): the tree is the dataset layout itself, class folders at its top
    assert {p.name for p in tree.iterdir()} == {"circle", "stripes", "checker", "blobs"}
    assert not (tree / "circle" / "copy_exact.jpg").exists() or not (tree / "circle" / "0000.jpg").exists()


def _plan(dataset: Path, **options) -> actions.Plan:
    report = scan(dataset, jobs=1, use_cache=False)
    return make_plan(report, dataset=dataset, **options)


def test_keep_policies(dataset: Path) -> None:
    circle = dataset / "train" / "circle"
    os.utime(circle / "copy_q60.jpg", ns=(1, 1))  # the oldest file of its group
    by_policy = {}
    for policy in ("resolution", "largest", "oldest", "first"):
        plan = _plan(dataset, keep=policy)
        group = next(g for g in plan.groups if any(f.path == "circle/copy_q60.jpg" for f in g.keep + g.drop))
        by_policy[policy] = group.keep[0]
        members = group.keep + group.drop
    # the keep rule: not the 192x192 upscale of the 96x96 original (it adds no detail), then the largest file (the
    # lossless PNG of the original's pixels)
    assert by_policy["resolution"].path == "circle/copy_png.png"
    assert by_policy["largest"].size == max(m.size for m in members)
    assert by_policy["oldest"].path == "circle/copy_q60.jpg"
    assert by_policy["first"].path == sorted(m.path for m in members)[0]


def test_scopes_kinds_conflicts_leakage(dataset: Path) -> None:
    exact_only = _plan(dataset, kinds=["exact"])
    assert [sorted(f.path for f in g.keep + g.drop) for g in exact_only.groups] == [
        ["circle/0000.jpg", "circle/copy_exact.jpg"]
    ]
    assert all(g.kind == "exact" for g in exact_only.groups)

    report = scan(dataset, jobs=1, use_cache=False)
    conflict_ids = {g.id for g in report.groups if g.is_label_conflict}
    leak_ids = {g.id for g in report.groups if g.is_leak}
    assert conflict_ids and leak_ids

    drop_all = make_plan(report, conflicts="drop-all")
    assert all(not g.keep and len(g.drop) >= 2 for g in drop_all.groups if g.id in conflict_ids)
    skip = make_plan(report, conflicts="skip")
    assert not {g.id for g in skip.groups} & conflict_ids

    from_train = make_plan(report, leakage="drop-from-train")
    for group in from_train.groups:
        if group.id in leak_ids:
            assert all(f.root == "train" for f in group.drop)
            assert all(f.root != "train" for f in group.keep)
    assert not {g.id for g in make_plan(report, leakage="skip").groups} & leak_ids
    with pytest.raises(InputError):
        make_plan(report, kinds=["bogus"])
    with pytest.raises(InputError):
        make_plan(report, keep="newest")


def test_plan_to_stdout_and_usage_errors(dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["dedup", str(dataset), "--plan", "-", "--no-cache", "-j", "1", "-q"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["format"] == "dupaudit-plan"
    assert runner.invoke(app, ["dedup"]).exit_code == 2
    assert runner.invoke(app, ["dedup", "--apply", str(tmp_path / "none.json")]).exit_code == 2
    assert (
        runner.invoke(
            app, ["dedup", "--apply", str(tmp_path / "none.json"), "--quarantine", str(tmp_path / "q")]
        ).exit_code
        == 2
    )
    assert runner.invoke(app, ["undo", str(tmp_path / "missing.jsonl")]).exit_code == 2


def test_python_api_round_trip(dataset: Path, tmp_path: Path) -> None:
    plan = _plan(dataset)
    write_plan(plan, tmp_path / "p.json")
    assert read_plan(tmp_path / "p.json") == plan
    before = checksums(dataset)
    apply_plan(plan, tmp_path / "q")
    assert undo(tmp_path / "q").restored == len(plan.drops)
    assert checksums(dataset) == before


def _tiny_dataset(root: Path) -> Path:

    folder = root / "data" / "cat"
    folder.mkdir(parents=True)
    for index in range(3):
        procedural_image(100 + index, 48).save(folder / f"img{index}.png")
    (folder / "zcopy.png").write_bytes((folder / "img0.png").read_bytes())
    return root / "data"


def test_a_kept_symlink_never_loses_its_target_and_links_round_trip(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path)
    os.symlink("img1.png", data / "cat" / "0link.png")  # sorts first: with --keep first it is the kept copy
    plan = _plan(data, keep="first")
    dropped = {f.path for f in plan.drops}
    assert "cat/img1.png" not in dropped  # moving it would break the kept link
    assert dropped == {"cat/zcopy.png"}  # the plain copies are still deduplicated
    # a dropped symlink moves as a link and comes back as the same link
    os.symlink("img2.png", data / "cat" / "zlink.png")
    plan = _plan(data, keep="first")
    assert "cat/zlink.png" in {f.path for f in plan.drops}
    for force_copy in (False, True):
        quarantine = tmp_path / f"q{force_copy}"
        apply_plan(plan, quarantine, force_copy=force_copy)
        assert os.readlink(quarantine / "data" / "cat" / "zlink.png") == "img2.png"
        assert (data / "cat" / "img2.png").exists()
        undo(quarantine, force_copy=force_copy)
        assert os.readlink(data / "cat" / "zlink.png") == "img2.png"
        assert (data / "cat" / "0link.png").read_bytes() == (data / "cat" / "img1.png").read_bytes()


def test_rename_across_filesystems_falls_back_to_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    data = _tiny_dataset(tmp_path)
    before = checksums(data)
    plan = _plan(data)
    quarantine = tmp_path / "q"
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).is_relative_to(data) != Path(dst).is_relative_to(data):  # "another filesystem"
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    result = apply_plan(plan, quarantine)
    assert result.moved == 1 and not (data / "cat" / "zcopy.png").exists()
    assert not list(quarantine.rglob("*" + actions.PARTIAL_SUFFIX))
    assert undo(quarantine).restored == 1
    assert checksums(data) == before


def test_failed_move_reports_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _tiny_dataset(tmp_path)
    (data / "cat" / "zcopy2.png").write_bytes((data / "cat" / "img0.png").read_bytes())
    before = checksums(data)
    plan = _plan(data)
    assert len(plan.drops) == 2
    real_rename, calls = os.rename, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(InputError, match="run the same command again to resume"):
        apply_plan(plan, tmp_path / "q")
    monkeypatch.setattr(os, "rename", real_rename)
    assert sum(1 for p in (tmp_path / "q").rglob("*.png")) + len(checksums(data)) == len(before)
    result = apply_plan(plan, tmp_path / "q")
    assert (result.moved, result.already) == (1, 1)
    undo(tmp_path / "q")
    assert checksums(data) == before


def test_undo_never_overwrites_a_file_created_since(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path)
    plan = _plan(data)
    quarantine = tmp_path / "q"
    apply_plan(plan, quarantine)
    (data / "cat" / "zcopy.png").write_bytes(b"a new file the user made")
    result = runner.invoke(app, ["undo", str(quarantine / actions.JOURNAL_NAME)])
    assert result.exit_code == 2
    assert "could not be restored" in result.output
    assert (data / "cat" / "zcopy.png").read_bytes() == b"a new file the user made"
    assert (quarantine / "data" / "cat" / "zcopy.png").read_bytes() == (data / "cat" / "img0.png").read_bytes()


def test_a_second_plan_cannot_reuse_a_quarantine(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path)
    apply_plan(_plan(data), tmp_path / "q")
    (data / "cat" / "zcopy3.png").write_bytes((data / "cat" / "img1.png").read_bytes())
    with pytest.raises(InputError, match="another plan"):
        apply_plan(_plan(data), tmp_path / "q")


def test_cli_apply_killed_then_rerun_resumes(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    before = checksums(dataset)
    dropped = dropped_paths(plan_path)
    quarantine = tmp_path / "q"
    command = [sys.executable, "-m", "dupaudit", "dedup", "--apply", str(plan_path), "--quarantine", str(quarantine)]
    killed = subprocess.run(
        command, env=dict(os.environ, **{actions.FAULT_ENV: "apply:2:moved"}), capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL
    env = {k: v for k, v in os.environ.items() if k != actions.FAULT_ENV}
    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "2 were already there" in resumed.stderr
    assert set(checksums(dataset)) == set(before) - set(dropped)
    undone = subprocess.run(
        [sys.executable, "-m", "dupaudit", "undo", str(quarantine)], env=env, capture_output=True, text=True
    )
    assert undone.returncode == 0, undone.stderr
    assert checksums(dataset) == before


def test_a_journal_torn_before_its_first_line_is_started_afresh(plan_path: Path, dataset: Path, tmp_path: Path) -> None:
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    (quarantine / actions.JOURNAL_NAME).write_bytes(b'{"format":"dupaudit-jou')
    result = apply_plan(read_plan(plan_path), quarantine)
    assert result.moved == len(dropped_paths(plan_path))
    header, moves, _ = actions.read_journal(quarantine / actions.JOURNAL_NAME)
    assert header["format"] == "dupaudit-journal" and len(moves) == result.moved


def test_default_plan_on_a_leak_keeps_every_evaluation_image(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split, seed in (("train", 0), ("val", 100), ("test", 200)):
        for label in ("cat", "dog"):
            for i in range(2):
                folder = data / split / label
                folder.mkdir(parents=True, exist_ok=True)
                procedural_image(seed + i + (50 if label == "dog" else 0), size=64).save(folder / f"{i:04d}.jpg")
    leaked = (data / "test" / "cat" / "0000.jpg").read_bytes()
    (data / "train" / "cat" / "from_test.jpg").write_bytes(leaked)
    (data / "val" / "cat" / "from_test.jpg").write_bytes(leaked)
    (data / "test" / "dog" / "twin.jpg").write_bytes((data / "test" / "dog" / "0001.jpg").read_bytes())
    report = scan(data, jobs=1, use_cache=False)
    plan = make_plan(report, dataset=data)
    dropped = sorted(f"{f.root}/{f.path}" for f in plan.drops)
    assert dropped == ["train/cat/from_test.jpg"]  # test and val lose nothing, not even test's own twin
    assert actions.drops_by_split(plan) == {"train": 1, "val": 0, "test": 0}
    assert plan.settings["protected_splits"] == ["val", "test"]
    asked = make_plan(report, dataset=data, protect_eval=False)
    assert {f.root for f in asked.drops} >= {"train", "test"}
    result = runner.invoke(app, ["dedup", str(data), "--no-cache", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "per split: train drops 1, val drops 0 (evaluation: protected), test drops 0 (evaluation: protected)" in (
        result.stderr
    )


def test_kinds_follow_the_members_links_without_decoding(dataset: Path, monkeypatch) -> None:
    """--kinds exact|pixel split a wider group by each member's link in the report (one rule, the scan's), not by
    digests computed again: nothing is decoded, and the units are what the links say."""
    import dupaudit.engine.fingerprint as fingerprint

    report = scan(dataset, jobs=1, use_cache=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the plan decoded files instead of reading the links")

    monkeypatch.setattr(fingerprint, "fingerprint_paths", no_decoding)
    for kinds in (["exact"], ["exact", "pixel"]):
        plan = make_plan(report, kinds=kinds)
        expected = []
        for group in report.groups:
            if group.kind in kinds:
                expected.append(sorted(m.path for m in group.members))
                continue
            twins: dict[int, set[int]] = {}  # by the links of the kinds asked, members joined to their targets
            for i, member in enumerate(group.members):
                if member.link is not None and member.link.kind in kinds:
                    merged = twins.get(i, {i}) | twins.get(member.link.to, {member.link.to})
                    for j in merged:
                        twins[j] = merged
            expected += [sorted(group.members[j].path for j in unit) for unit in {frozenset(u) for u in twins.values()}]
        assert sorted(sorted(f.path for f in g.keep + g.drop) for g in plan.groups) == sorted(expected), kinds
    assert any(g.kind == "pixel" for g in make_plan(report, kinds=["pixel"]).groups)
