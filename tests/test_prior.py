"""The built-in prior: its configs tried first on a large data set, and trained alone when the
budget is too short for a search to pay."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fer_core.model import check_fits
from search.settings import LARGE_DATA, SearchSettings
from search.tuning.prior import (PRIOR, SEARCH_PAYS_TRIALS, THREAD_FLOPS_PER_S, faces_seconds, measured_flops_per_s,
                                 pack_members, prior_points, prior_records, search_pays, trial_seconds)
from search.tuning.space import INPUT_SHAPE, seed_point, to_config
from tests.conftest import search_run

FER2013_TRAIN = 28_709


def large(**values) -> SearchSettings:
    return SearchSettings(**values).sized_for(FER2013_TRAIN)


def test_the_prior_is_a_few_configs_of_the_large_space_and_only_there() -> None:
    points = prior_points(large())
    assert 1 <= len(points) == len(PRIOR) <= 5
    for point, entry in zip(points, PRIOR):
        config = to_config(point | {"epochs": 57, "round_images": 8192})
        check_fits(config, INPUT_SHAPE)
        assert all(point[name] == value for name, value in entry.params.items() if name in point)
        assert point != seed_point(max_epochs=57, large=True)
    # not on a small data set, not with --prior none, not when fine-tuning
    assert prior_points(SearchSettings().sized_for(LARGE_DATA - 1)) == []
    assert prior_points(large(prior="none")) == []


def test_prior_records_are_unrun_trials_with_every_constant_of_the_space() -> None:
    records = prior_records(large())
    assert [r.trial_id for r in records] == [f"prior{i}" for i in range(1, len(PRIOR) + 1)]
    for record in records:
        assert record.status == "prior" and not record.scored and record.history == ()
        config = record.train_config
        assert (config.epochs, config.round_images, config.normalize) == (57, 8192, "standardize")


def test_the_search_pays_when_its_time_holds_a_few_full_length_trials_of_the_prior_s_best() -> None:
    settings = large(slots=2)
    points = prior_points(settings)
    each = trial_seconds(points[0], settings, FER2013_TRAIN)
    needed = SEARCH_PAYS_TRIALS * each / settings.slots
    assert search_pays(settings, points, needed * 1.01, FER2013_TRAIN) is None
    why = search_pays(settings, points, needed * 0.5, FER2013_TRAIN)
    assert why is not None and f"fewer than the {SEARCH_PAYS_TRIALS} a search needs" in why
    # FER2013's budgets of 20 minutes, one hour and two hours (576, 1782 and 3580 s of search) do not pay
    for search_s in (576, 1782, 3580):
        assert search_pays(settings, points, search_s, FER2013_TRAIN) is not None
    assert search_pays(settings, [], 1.0, FER2013_TRAIN) is None  # no prior: the search runs, as before
    # twice the threads a trial, half the time a trial
    assert trial_seconds(points[0], large(slots=2, resources=settings.resources.__class__(2.0, 0.0)),
                         FER2013_TRAIN) == pytest.approx(each / 2)


def packed(starts, ends, rate, threads=1, most=5):
    """What :func:`pack_members` plans, as ``(trial id, seed, rounds, slot, seconds)``, checking that no
    slot's members start before it is free or end after its end."""
    planned = pack_members(prior_records(large()), starts, ends, threads, rate, most=most, most_rounds=171)
    for slot in range(len(starts)):
        on_slot = [p for p in planned if p.slot == slot]
        assert [p.start for p in on_slot] == sorted(p.start for p in on_slot)
        if on_slot:
            assert on_slot[0].start == starts[slot]
            assert on_slot[-1].start + on_slot[-1].seconds == pytest.approx(ends[slot]) or \
                on_slot[-1].start + on_slot[-1].seconds < ends[slot]
        for before, after in zip(on_slot, on_slot[1:]):
            assert after.start == pytest.approx(before.start + before.seconds)
    assert [p.start for p in planned] == sorted(p.start for p in planned)  # the order Ray starts them in
    return [(p.record.trial_id, p.record.config["seed"], p.record.config["epochs"], p.slot, round(p.seconds))
            for p in planned]


def test_a_run_that_does_not_search_packs_the_prior_s_configs_best_at_its_members_lengths() -> None:
    """Which configs a run too short to search trains depends on how long its members can train, in
    faces: few, the seed's CNN as it is; more, with the mirror image, for up to 80 rounds, where it
    learns its faces by heart; a million or more, the wider network too. A slot holds members one
    after another; a config trained again takes the next seed."""
    records = {r.trial_id: r for r in prior_records(large())}
    mirror, wide = records["prior1"], records["prior3"]
    assert (wide.train_config.base_filters, mirror.train_config.flip, records["prior2"].train_config.flip) == (48, True,
                                                                                                            False)
    fast = measured_flops_per_s(830.0, 1)  # this machine's thread in December 2026
    assert fast > 2 * THREAD_FLOPS_PER_S
    assert faces_seconds(wide.train_config, 1e6, 1, fast) < 3300 < faces_seconds(wide.train_config, 1e6, 1)
    # 50k faces: before the mirror image pays
    assert packed([0.0], [60.0], fast) == [("prior2", 42, 18, 0, 60)]
    # a 20-minute run: the seed's recipe leaves the second slot too little for a member; the first
    # slot holds more than one member's length (790 s) but not one and a least one, so two share it
    assert packed([0.0, 780.0], [1000.0, 1000.0], fast) == [("prior1", 42, 80, 0, 500), ("prior1", 43, 80, 0, 500)]
    # an hour: the wider network on the first slot (its rest too short for a second of it), the mirror
    # image's after the seed's recipe, the last 940 s shared by two
    hour = packed([0.0, 780.0], [3300.0, 3300.0], fast)
    assert [(m[0], m[1], m[2], m[3]) for m in hour] == [("prior3", 42, 147, 0), ("prior1", 42, 80, 1),
                                                        ("prior1", 43, 80, 1), ("prior1", 44, 80, 1),
                                                        ("prior1", 45, 80, 1)]
    assert [m[4] for m in hour] == [3300, 790, 790, 470, 470]
    # at the slower reference rate the wider network is short of its million faces: the mirror image only
    assert {m[0] for m in packed([0.0, 780.0], [3300.0, 3300.0], THREAD_FLOPS_PER_S)} == {"prior1"}
    # two hours: the two configs in turn, on the slot with the most time left, up to five members
    two = packed([0.0, 780.0], [6900.0, 6900.0], fast)
    assert [m[0] for m in two] .count("prior3") == 3 and [m[0] for m in two].count("prior1") == 2
    assert sorted(m[1] for m in two if m[0] == "prior3") == [42, 43, 44]
    assert len(packed([0.0, 780.0], [6900.0, 6900.0], fast, most=9)) > 5
    assert len(packed([0.0, 780.0], [6900.0, 6900.0], fast, most=1)) == 1
    # two threads a member: the faces of twice the seconds on one
    assert packed([0.0], [1700.0], fast, threads=2)[0][0] == "prior3"


def test_the_searcher_tries_the_seed_then_the_prior_then_the_given_points() -> None:
    pytest.importorskip("ray")
    from search.tuning.tuner import build_searcher

    settings = large(points=({"learning_rate": 0.003},))
    searcher = build_searcher(settings)
    enqueued = searcher._points_to_evaluate
    assert enqueued[0] == seed_point(max_epochs=settings.max_t, large=True)
    assert enqueued[1:-1] == prior_points(settings) and enqueued[-1] == {"learning_rate": 0.003}


@pytest.mark.slow
def test_a_budget_too_short_to_search_trains_the_prior_s_best_for_it(tmp_path: Path) -> None:
    """A large data set (synthetic faces, above LARGE_DATA training faces) under 150 seconds: no trial
    runs, the prior's config best at the faces that fit trains for the epochs that fit beside the seed's
    recipe, and the report says why. (Whether a run keeps its budget is measured by
    experiments/bench_search, not here.)"""
    result = search_run("--data", "synthetic:26000", "--time-budget", "150s", "--output", str(tmp_path),
                        "--name", "short", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no search:" in result.stderr
    # a line a minute while it trains (the seed's recipe, fitted to one epoch, may be done by then)
    assert re.search(r"final stage: [01] of 2 trainings done", result.stderr)
    report = json.loads((tmp_path / "short" / "report.json").read_text())
    assert [t["status"] for t in report["trials"]] == ["prior"] * len(PRIOR)
    assert "a search needs to pay" in report["search_skipped"]
    # the machine's rate measured, and the config chosen for the faces its member trains in its time said
    chosen = re.search(r"faces/s on 1 thread\(s\) here; the \d+ s left train the prior's (prior\d) \(for (\d+) s\)",
                       result.stderr)
    assert chosen, result.stderr[-3000:]
    assert report["best_trial_id"] == chosen[1] and report["trials_completed"] == 0
    member = report["ensemble"][0]
    # fitted to the time: fewer epochs than the final stage's 3x of the 33-round budget
    assert member["trial_id"] == chosen[1] and 1 <= member["epochs"] < 33 * 3 and report["search_wall_clock_s"] < 5
    assert report["test_accuracy"] > 2 * report["majority_accuracy"] or report["test_accuracy"] > 0.5
    assert (tmp_path / "short" / "best" / "model.keras").is_file()
    assert "No search:" in (tmp_path / "short" / "report.md").read_text()
