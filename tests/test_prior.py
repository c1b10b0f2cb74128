"""The built-in prior: its configs tried first on a large data set, and trained alone when the
budget is too short for a search to pay."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fer_core.model import check_fits
from search.settings import LARGE_DATA, SearchSettings
from search.tuning.prior import (PRIOR, SEARCH_PAYS_TRIALS, THREAD_FLOPS_PER_S, alone_configs, faces_trained,
                                 measured_flops_per_s, prior_points, prior_records, search_pays, trial_seconds)
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
    # FER2013's 20-minute budget (576 s of search) does not pay; with the seed's CNN first, 2 hours (3574 s) do
    assert search_pays(settings, points, 576, FER2013_TRAIN) is not None
    assert search_pays(settings, [], 1.0, FER2013_TRAIN) is None  # no prior: the search runs, as before
    # twice the threads a trial, half the time a trial
    assert trial_seconds(points[0], large(slots=2, resources=settings.resources.__class__(2.0, 0.0)),
                         FER2013_TRAIN) == pytest.approx(each / 2)


def test_a_member_trains_the_prior_s_config_best_at_the_faces_its_time_holds() -> None:
    """Which config a run too short to search trains depends on its member's length in faces: few,
    the seed's CNN as it is; more, with the mirror image; a million or more, the wider network."""
    records = {r.trial_id: r for r in prior_records(large())}
    no_augment, mirror, wide = records["prior2"], records["prior1"], records["prior3"]
    assert (wide.train_config.base_filters, mirror.train_config.flip, no_augment.train_config.flip) == (48, True, False)
    fast = measured_flops_per_s(830.0, 1)  # this machine's thread in December 2026
    assert fast > 2 * THREAD_FLOPS_PER_S
    assert faces_trained(wide.train_config, 3300, 1, fast) > 1e6 > faces_trained(wide.train_config, 1100, 1, fast)
    prior = list(records.values())
    assert alone_configs(prior, [60.0], 1, fast) == [no_augment]  # 50k faces: before the mirror pays
    assert alone_configs(prior, [1100.0], 1, fast) == [mirror]  # a 20-minute run's member
    assert alone_configs(prior, [3300.0, 2500.0], 1, fast) == [wide, mirror]  # an hour's, and one after the seed
    assert alone_configs(prior, [3300.0], 1) == [mirror]  # at the slower reference rate, the wider one is short
    assert alone_configs(prior, [3300.0] * 5, 1, fast) == [wide, mirror, no_augment]  # none twice
    # two threads a member: the faces of twice the seconds on one
    assert alone_configs(prior, [1700.0], 2, fast) == [wide]


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
    assert "final stage: 0 of 2 trainings done" in result.stderr  # a line a minute while it trains
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
