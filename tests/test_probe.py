"""dupaudit probe: arms, hold-out, injection, intervals, adversarial training, JSON, missing torch.

Tiny generated data (a few dozen 16 px images), 1 epoch, width 8, one CPU thread: the whole file runs in
well under a minute. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.engine.discover import discover, resolve_roots
from dupaudit.engine.pipeline import scan
from dupaudit.probing import ProbeSettings, mean_interval, paired_difference, run_probe
from dupaudit.probing.data import (
    arm_pool,
    build_pool,
    choose_classes,
    class_names,
    inject,
    injected_counts,
    label_indices,
    member_groups,
    stratified_holdout,
)
from dupaudit.probing.stats import describe_difference

torch.set_num_threads(1)  # tiny networks run fastest on one thread, and the machine is shared

CLASSES = ("ant", "bee", "cow")
TINY = dict(epochs=1, size=16, width=8, threads=1)


def _image(seed: int, label: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(16, 16, 3)).astype(np.float64)
    pixels[..., label] = 0.5 * pixels[..., label] + 127  # a class colour cast: learnable, yet every image distinct
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def make_dataset(root: Path, splits: bool = True, train_per_class: int = 10, test_per_class: int = 4) -> Path:
    """ROOT/{train,test}/<class>/*.png (or ROOT/<class>/*.png) with planted exact copies.

    ant: one image with 3 extra copies (a group of 4); bee: one pair; cow: none.
    """
    seed = 0
    parts = (("train", train_per_class), ("test", test_per_class)) if splits else (("", train_per_class),)
    for split, count in parts:
        for label, name in enumerate(CLASSES):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                seed += 1
                _image(seed, label).save(folder / f"{index:03d}.png")
    train = root / "train" if splits else root
    for copy in range(3):
        (train / "ant" / f"copy{copy}.png").write_bytes((train / "ant" / "000.png").read_bytes())
    (train / "bee" / "copy.png").write_bytes((train / "bee" / "001.png").read_bytes())
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("probe") / "data")


@pytest.fixture(scope="module")
def flat_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("probe_flat") / "flat", splits=False, train_per_class=16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache") / "fingerprints.sqlite"


def _train_records_and_groups(root: Path, cache: Path):
    report = scan(root, cache_path=cache)
    records, _ = discover(resolve_roots(root))
    return [r for r in records if r.root == report.train_split], report


# --- arms -------------------------------------------------------------------------------------------------------


def test_arms_dedup_keeps_one_per_group_and_random_removes_as_many(dataset, cache):
    records, report = _train_records_and_groups(dataset, cache)
    pool = build_pool(records, report.groups)
    assert len(pool) == 34 and pool.redundant == 4  # 30 originals + 3 ant copies + 1 bee copy

    dedup = arm_pool(pool, "deduplicated", seed=0)
    groups, counts = np.unique(dedup.groups, return_counts=True)
    assert (counts == 1).all()  # exactly one member of every group
    assert set(groups) == set(pool.groups)  # and no group lost entirely
    assert len(dedup) == len(pool) - pool.redundant == 30

    for seed in (0, 1, 2):
        control = arm_pool(pool, "random-removed", seed=seed)
        assert len(control) == len(dedup)  # the same number removed...
        assert len(set(control.items.tolist())) == len(control)  # ...without repeats, from the pool
    assert not np.array_equal(arm_pool(pool, "random-removed", 0).items, arm_pool(pool, "random-removed", 1).items)
    assert np.array_equal(arm_pool(pool, "random-removed", 1).items, arm_pool(pool, "random-removed", 1).items)
    assert arm_pool(pool, "as-is", 0) is pool


def test_dedup_keeps_the_scans_kept_member(dataset, cache):
    records, report = _train_records_and_groups(dataset, cache)
    pool = build_pool(records, report.groups)
    kept_keys = {(g.kept.root, g.kept.path) for g in report.groups}
    kept_records = {records[i].key for i in pool.items[pool.keep]}
    assert kept_keys <= kept_records


def test_holdout_keeps_every_group_on_one_side(flat_dataset, cache):
    records, report = _train_records_and_groups(flat_dataset, cache)
    assert report.groups, "the planted copies must be found"
    for seed in range(6):
        train, test = stratified_holdout(records, report.groups, 0.25, seed)
        assert len(train) + len(test) == len(records)
        sides = {}
        for side, part in (("train", train), ("test", test)):
            for key, group in member_groups(part, report.groups).items():
                sides.setdefault(group, set()).add(side)
        assert all(len(s) == 1 for s in sides.values())
        for name in CLASSES:  # stratified: each class near a quarter of its images
            total = sum(r.label == name for r in records)
            held = sum(r.label == name for r in test)
            assert abs(held - 0.25 * total) <= 3


def test_flat_root_is_probed_on_a_holdout(flat_dataset, cache):
    report = run_probe(flat_dataset, settings=ProbeSettings(arms=("as-is",), seeds=1, **TINY), cache_path=cache)
    assert report.data.test_source.startswith("hold-out")
    assert report.data.leaked == 0  # groups never straddle the hold-out
    assert report.data.train_images + report.data.test_images == 16 * 3 + 4


# --- injection --------------------------------------------------------------------------------------------------


def test_injection_adds_the_requested_copies_per_class(dataset, cache):
    records, report = _train_records_and_groups(dataset, cache)
    classes = class_names(records)
    labels = label_indices(records, classes)
    clean = build_pool(records, []).subset(np.ones(len(records), dtype=bool))
    sizes = np.bincount(labels[clean.items], minlength=3).tolist()
    assert sizes == [13, 11, 10]

    uniform = injected_counts(sizes, "uniform", 0.3, chosen=[])
    assert sum(uniform) == round(0.3 * 34 / 0.7) == 15  # rate 0.3 of the injected set: 15 / 49 copies
    assert all(abs(k - 0.3 * n / 0.7) < 1 for k, n in zip(uniform, sizes)) and uniform == [6, 5, 4]
    injected = inject(clean, labels, uniform, seed=0)
    after = np.bincount(labels[injected.items], minlength=3)
    assert (after - np.array(sizes)).tolist() == uniform
    assert injected.redundant == sum(uniform)
    for c in range(3):  # every class the same share of copies
        assert abs((after[c] - sizes[c]) / after[c] - 0.3) < 0.05

    chosen = choose_classes(classes, ["bee"], seed=0)
    assert chosen == [1]
    nonuniform = injected_counts(sizes, "nonuniform", 0.3, chosen)
    assert nonuniform[0] == nonuniform[2] == 0
    assert nonuniform[1] == sum(uniform)  # the same amount, in one class
    injected = inject(clean, labels, nonuniform, seed=0)
    assert np.bincount(labels[injected.items], minlength=3).tolist() == [13, 11 + nonuniform[1], 10]
    # copies join their source's group, so deduplication recovers exactly the clean set
    dedup = arm_pool(injected, "deduplicated", 0)
    assert sorted(dedup.items.tolist()) == sorted(clean.items.tolist())
    # copies spread over the class: no image copied twice before every image is copied once
    copied = np.bincount(injected.items[len(clean) :], minlength=len(records))
    bee = np.flatnonzero(labels == 1)
    assert copied[bee].max() - copied[bee].min() <= 1

    random_pick = choose_classes(classes, [], seed=0)
    assert len(random_pick) == 1 and random_pick == choose_classes(classes, [], seed=0)


def test_injection_rejects_unknown_classes_and_rates():
    from dupaudit.errors import InputError

    with pytest.raises(InputError, match="no class named 'yak'"):
        choose_classes(CLASSES, ["yak"], seed=0)
    with pytest.raises(InputError):
        injected_counts([10, 10], "uniform", 1.0, [])
    with pytest.raises(InputError):
        ProbeSettings(inject="uniform")  # a mode without a rate


# --- intervals --------------------------------------------------------------------------------------------------


def test_t_intervals_on_known_inputs():
    interval = mean_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.302653; half width = 4.302653 / sqrt(3)
    assert interval.mean == pytest.approx(2.0)
    assert interval.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert interval.low == pytest.approx(2 - 2.484138, abs=1e-5)
    assert not interval.excludes_zero

    difference = paired_difference([0.91, 0.92, 0.93, 0.94], [0.90, 0.90, 0.90, 0.90])
    # differences 0.01..0.04: mean 0.025, s = 0.0129099, t(0.975, 3) = 3.182446
    assert difference.mean == pytest.approx(0.025)
    assert difference.half_width == pytest.approx(3.182446 * 0.0129099 / 2, rel=1e-5)
    assert difference.excludes_zero
    assert "significantly higher" in describe_difference("d", difference)

    # pairing matters: the same values, unpaired, would overlap
    same = paired_difference([0.5, 0.7, 0.9], [0.49, 0.69, 0.89])
    assert same.half_width == pytest.approx(0.0, abs=1e-12) and same.excludes_zero

    single = mean_interval([0.5])
    assert single.low is None and single.high is None and not single.excludes_zero
    assert "not tested" in describe_difference("d", single)
    assert "no detectable difference" in describe_difference("d", paired_difference([1, 2], [2, 1]))


# --- training ---------------------------------------------------------------------------------------------------


def _tensors(n: int = 24, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % classes
    images[:, 0] = (images[:, 0] // 2 + 120 * (labels == 0).to(torch.uint8)[:, None, None]).to(torch.uint8)
    return images, labels, torch.full((3,), 0.5), torch.full((3,), 0.25)


def test_training_is_deterministic_on_cpu_for_a_seed():
    from dupaudit.probing.train import train_model

    images, labels, mean, std = _tensors()
    runs = [
        train_model(
            images, labels, num_classes=3, mean=mean, std=std, seed=seed, total_steps=4, batch_size=8, width=8
        ).model.state_dict()
        for seed in (7, 7, 8)
    ]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("kind", ["pgd", "fgsm"])
def test_adversarial_training_runs_and_robust_accuracy_is_at_most_clean(kind):
    from dupaudit.probing.train import AttackSpec, attack, evaluate, train_model

    images, labels, mean, std = _tensors(n=32)
    spec = AttackSpec.for_training(kind, 8 / 255, 2)
    outcome = train_model(
        images,
        labels,
        num_classes=3,
        mean=mean,
        std=std,
        seed=0,
        total_steps=4,
        batch_size=8,
        width=8,
        adversarial=spec,
    )
    clean, robust = evaluate(outcome.model, images, labels, tta_level=0, robust=AttackSpec.for_evaluation(8 / 255))
    assert robust is not None and len(robust) == len(clean)
    assert robust.mean() <= clean.mean()
    assert not np.any(robust & ~clean)  # robust means right both clean and under attack, image by image
    # the attack stays in the eps-ball and in [0, 1], and does raise the loss
    x = images.float() / 255
    generator = torch.Generator().manual_seed(0)
    x_adv = attack(outcome.model, x, labels, AttackSpec.for_evaluation(8 / 255), generator, autocast=False)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy
        assert loss(outcome.model(x_adv), labels) > loss(outcome.model(x), labels)


def test_adversarial_probe_reports_robust_accuracy_per_arm(dataset, cache):
    settings = ProbeSettings(arms=("as-is", "deduplicated"), seeds=2, adversarial="fgsm", **TINY)
    report = run_probe(dataset, settings=settings, cache_path=cache)
    (condition,) = report.conditions
    for arm in condition.arms:
        assert arm.robust_accuracy is not None
        assert arm.robust_accuracy.mean <= arm.accuracy.mean
    metrics = {(c.treatment, c.control, c.metric) for c in condition.comparisons}
    assert metrics == {("deduplicated", "as-is", "accuracy"), ("deduplicated", "as-is", "robust_accuracy")}


def test_match_steps_gives_smaller_arms_the_as_is_step_count(dataset, cache):
    base = dict(arms=("as-is", "deduplicated"), seeds=1, batch_size=4, **TINY)
    same_epochs = run_probe(dataset, settings=ProbeSettings(**base), cache_path=cache).conditions[0]
    matched = run_probe(dataset, settings=ProbeSettings(match_steps=True, **base), cache_path=cache).conditions[0]
    assert same_epochs.arm("deduplicated").steps == 30 // 4 < same_epochs.arm("as-is").steps == 34 // 4
    assert matched.arm("deduplicated").steps == matched.arm("as-is").steps == 34 // 4
    assert matched.arm("deduplicated").images_seen == matched.arm("as-is").images_seen


def test_sweep_injects_each_rate_and_reuses_identical_runs(dataset, cache, tmp_path):
    settings = ProbeSettings(
        arms=("as-is", "deduplicated"),
        seeds=1,
        inject="nonuniform",
        rates=(0.0, 0.3),
        inject_classes=("cow",),
        max_train=15,
        **TINY,
    )
    report = run_probe(dataset, settings=settings, cache_path=cache)
    zero, thirty = report.conditions
    assert (zero.rate, thirty.rate) == (0.0, 0.3)
    assert zero.arm("as-is").train_images == zero.arm("deduplicated").train_images == 15  # the subset is clean
    assert thirty.arm("as-is").train_images == 15 + round(0.3 * 15 / 0.7)
    assert thirty.arm("deduplicated").train_images == 15
    cow = next(d for d in thirty.class_deltas if d.label == "cow")
    assert cow.redundant == thirty.redundant == round(0.3 * 15 / 0.7)
    assert all(d.redundant == 0 for d in thirty.class_deltas if d.label != "cow")
    # the clean training set with the same seed ran once: later runs reuse it (deterministic)
    reused = [r for c in report.conditions for r in c.runs if r.reused]
    assert len(reused) == 2
    from dupaudit.probing.plot import plot_report

    plot_report(report, tmp_path / "sweep.png")  # three panels, the last the sweep curve
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_json_holds_what_the_table_shows(dataset, cache, tmp_path):
    out, png = tmp_path / "probe.json", tmp_path / "probe.png"
    result = CliRunner().invoke(
        app,
        [
            "probe",
            str(dataset),
            "--epochs",
            "1",
            "--seeds",
            "2",
            "--size",
            "16",
            "--width",
            "8",
            "--cache",
            str(cache),
            "--json",
            str(out),
            "--plot",
            str(png),
            "--threads",
            "1",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "dupaudit-probe" and data["schema_version"] == 2
    assert data["torch_version"] == torch.__version__ and data["device"].startswith("cpu")
    assert data["seeds"] == [0, 1] and data["settings"]["epochs"] == 1
    assert data["data"]["redundant"] == 4 and data["data"]["groups"] == 2
    (condition,) = data["conditions"]
    assert [a["arm"] for a in condition["arms"]] == ["as-is", "deduplicated", "random-removed"]
    for arm in condition["arms"]:
        runs = [r for r in condition["runs"] if r["arm"] == arm["arm"]]
        assert [r["seed"] for r in runs] == [0, 1]
        assert arm["accuracy"]["mean"] == pytest.approx(np.mean([r["accuracy"] for r in runs]))
        mean, low, high = (100 * arm["accuracy"][k] for k in ("mean", "low", "high"))
        assert 0 <= low <= mean <= high <= 100  # an accuracy interval stays within what an accuracy can be
        symmetric = f"{mean:.2f} ± {high - mean:.2f}"
        if abs((high - mean) - (mean - low)) < 1e-9:
            assert symmetric in result.stdout
        else:  # cut at 0 or 100%: "mean (low–high)", which a narrow table may wrap after the mean
            assert f"{mean:.2f}" in result.stdout and f"({low:.2f}–" in result.stdout
        assert f"{arm['train_images']:,}" in result.stdout
    for comparison in condition["comparisons"]:
        assert comparison["text"] in result.stdout
    assert {d["label"] for d in condition["class_deltas"]} == set(CLASSES)
    ant = next(d for d in condition["class_deltas"] if d["label"] == "ant")
    assert ant["redundant"] == 3 and ant["duplication_rate"] == pytest.approx(3 / 13)
    assert "training time, deduplicated / as-is" in result.stdout
    for arm in condition["arms"]:  # times: a geometric mean with a log-scale interval, never below 0
        seconds = arm["train_seconds"]
        assert seconds["scale"] == "log" and 0 < seconds["low"] <= seconds["mean"] <= seconds["high"]
    assert "2 seeds · 1 epoch ·" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_options_with_exit_2(dataset, cache):
    runner = CliRunner()
    assert runner.invoke(app, ["probe", str(dataset), "--arms", "as-is,bogus"]).exit_code == 2
    assert runner.invoke(app, ["probe", str(dataset), "--rate", "0.3"]).exit_code == 2  # a rate without --inject
    assert runner.invoke(app, ["probe", str(dataset / "absent")]).exit_code == 2


def test_missing_torch_exits_2_with_the_pip_line(dataset):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from dupaudit.cli import main\n"
        f"sys.argv = ['dupaudit', 'probe', {str(dataset)!r}, '--no-cache']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'dupaudit[probe]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_importing_the_cli_and_the_probe_package_leaves_torch_unloaded():
    code = (
        "import sys, dupaudit, dupaudit.cli, dupaudit.probing\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_one_seed_is_not_tested_in_json_table_and_plot(dataset, cache, tmp_path):
    out, png = tmp_path / "one.json", tmp_path / "one.png"
    arguments = ["probe", str(dataset), "--epochs", "1", "--seeds", "1", "--size", "16", "--width", "8"]
    arguments += ["--arms", "as-is,deduplicated", "--cache", str(cache), "--json", str(out), "--plot", str(png)]
    result = CliRunner().invoke(app, [*arguments, "--threads", "1"], terminal_width=200)
    assert result.exit_code == 0, result.output
    (condition,) = json.loads(out.read_text())["conditions"]
    (comparison,) = condition["comparisons"]
    assert comparison["significant"] is None and comparison["verdict"] == "not tested"
    assert comparison["seeds_needed"] is None and "not tested" in result.stdout
    assert "1 seed · 1 epoch ·" in result.stdout and "1 seeds" not in result.stdout
    assert "one seed: no interval" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_probe_decodes_nothing_and_a_probe_no_file_twice(tmp_path, monkeypatch):
    from dupaudit.probing import data as probe_data
    from dupaudit.probing.pixels import store_path

    dataset = make_dataset(tmp_path / "data")  # its own copy: a file is changed below
    decoded: list[str] = []
    real = probe_data._decode
    monkeypatch.setattr(probe_data, "_decode", lambda path, size: decoded.append(path) or real(path, size))
    cache = tmp_path / "fingerprints.sqlite"
    first = run_probe(dataset, settings=ProbeSettings(arms=("as-is",), seeds=1, **TINY), cache_path=cache)
    files = first.data.train_images + first.data.test_images
    assert len(decoded) == len(set(decoded)) == files == first.data.decoded_files  # each file once
    assert store_path(cache).exists()

    decoded.clear()
    settings = ProbeSettings(arms=("as-is", "deduplicated"), seeds=1, **TINY)
    second = run_probe(dataset, settings=settings, cache_path=cache)
    assert decoded == [] and second.data.decoded_files == 0  # every pixel from the store: no second decode
    # the stored pixels are the decoded ones: the same seed on the same images gives the same model
    assert second.conditions[0].arm("as-is").accuracy == first.conditions[0].arm("as-is").accuracy

    changed = dataset / "train" / "cow" / "000.png"  # a file changed since is decoded again, alone
    Image.open(changed).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(changed)
    third = run_probe(dataset, settings=ProbeSettings(arms=("as-is",), seeds=1, **TINY), cache_path=cache)
    assert decoded == [str(changed)] and third.data.decoded_files == 1

    decoded.clear()
    run_probe(dataset, settings=ProbeSettings(arms=("as-is",), seeds=1, **TINY), use_cache=False)
    assert len(decoded) == files  # --no-cache: no store, every file decoded


def test_a_budget_probe_runs_the_plan_it_reports(dataset, cache, monkeypatch, tmp_path):
    from dupaudit.probing import calibrate
    from dupaudit.probing.budget import DeviceSpeed
    from dupaudit.probing.results import render_json

    measured: list[int] = []

    def mocked(device, *, width, **_):  # a fixed device speed: the plan depends on nothing measured here
        measured.append(width)
        return DeviceSpeed(width, 2000.0, 5000.0, 0.01)

    monkeypatch.setattr(calibrate, "measure_speed", mocked)
    settings = ProbeSettings(arms=("as-is",), seeds=1, budget_seconds=600, explicit=("width",), **TINY)
    announced = []
    report = run_probe(dataset, settings=settings, cache_path=cache, on_plan=announced.append)
    plan = report.budget
    assert announced == [plan]  # handed out before training, the same plan the report records
    assert plan is not None and measured == [8]  # the explicit width is the only one calibrated, and kept
    assert plan.width == report.settings.width == 8 and "width" not in plan.chosen
    assert report.settings.epochs == plan.epochs and report.settings.tta_level == plan.tta_level
    assert report.data.train_images == plan.train_images == 34  # everything fits: all images...
    assert plan.epochs == 10.0  # ...for the recipe's epochs
    assert report.conditions[0].arm("as-is").steps == plan.epochs * (34 // plan.batch_size)
    data = json.loads(render_json(report))
    assert data["budget"]["width"] == 8 and data["budget"]["reasons"] == list(plan.reasons)
