"""Every setting of a run in one place: each flag with its default and help once, and the
typed, frozen settings each stage takes.

The command line (:mod:`search.cli`) builds its parser and the README's flag table from
:data:`FLAGS`; the stages take :class:`RunSettings` and never see the parser. A default's
evidence is in ``experiments/README.md`` under the section its comment names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from fer_core.config import NORMALIZATIONS
from fer_core.images import FACES
from fer_core.splits import SPLITS
from fer_core.transfer import Pretrained

# ----------------------------------------------------------------------------- the search
METRICS = ("val_accuracy", "val_macro_f1")
SAMPLERS = ("startup", "tpe")  # the first is the default
SCHEDULERS = ("asha", "hyperband", "none")  # the first is the default
PRIORS = ("builtin", "none")  # the first is the default (search.tuning.prior)
DEFAULT_TRIALS = 50
DEFAULT_MAX_EPOCHS = 16  # same test accuracy as the seed's 20 in 83% of the time ("The 50-trial search")
STARTUP_SHARE = 0.4  # random start: two fifths of the trials, or of a budget's time ("The 50-trial search")
STARTUP_CAP = 20  # ... at most this many trials
ASHA_REDUCTION_FACTOR = 3
ASHA_GRACE_SHARE = 0.2  # first rung at a fifth of the epoch budget (3 of 16), the next at 3x that
ASHA_WINDOW = 9  # a trial at a rung is judged against the last 9 trials that reached it ...
ASHA_KEEP = 0.25  # ... and goes on if among their best quarter ("The 50-trial search")
# on a large data set a trial's epoch is a round of this many faces, judged seconds rather than
# minutes into a trial ("FER2013 in rounds")
ROUND_IMAGES = 8192
LARGE_DATA = 2 * ROUND_IMAGES  # training faces from which trials run in rounds and the space is the large one

# ----------------------------------------------------------------------------- after the search
DEFAULT_CONFIRM = 6  # 6 configs x 3 folds: 37-182 s on 2 CPUs on CK+ ("The 50-trial search")
DEFAULT_FOLDS = 3
DEFAULT_ENSEMBLE = 5  # 5 members beat 3 in 4 of 6 CK+ pairs ("The 50-trial search")
DEFAULT_FINAL_EPOCHS_SCALE = 3.0  # +0.8 points over 2x in cross-validation ("The 50-trial search")
DEFAULT_FINAL_MIXUP = 0.0  # mixup's cross-validation gains did not hold on test: off
DEFAULT_FINAL_INPUTS = ("standardize",)  # a second input doubled the retrain for 0-0.5 points

# ----------------------------------------------------------------------------- the time budget
SEARCH_SHARE = 0.5
CONFIRM_SHARE = 0.2  # with --confirm 0 it goes to the search; off by the data's size, to the final model
FINAL_SHARE = 0.3
NO_BUDGET = "none"
FIRST_RUN_DATA = "synthetic"
FIRST_RUN_BUDGET = "8m"  # the first look fits in 10 minutes on 2 cores ("The first run within 10 minutes")
# below LARGE_DATA an unflagged run ends within 30 min: CK+'s 50 trials took 12.5-80.6 min unbounded
# ("A default budget for small data sets")
SMALL_DATA_BUDGET = "27m"


def is_large(n_train: int) -> bool:
    """Whether ``n_train`` training faces make a large data set: trials in rounds, the large space."""
    return n_train >= LARGE_DATA


def round_images(n_train: int) -> int:
    """A trial's epoch on ``n_train`` training faces: :data:`ROUND_IMAGES` faces on a large data set, else
    0 (a pass)."""
    return ROUND_IMAGES if is_large(n_train) else 0


@dataclass(frozen=True)
class Resources:
    """What one trial, or one training task, is given: CPUs (also TensorFlow's threads) and GPUs."""

    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        """TensorFlow's intra- and inter-op threads: the whole CPUs given, at least one."""
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class SearchSettings:
    """What defines a search: its size, its metric, its sampler and scheduler, its seed, and the
    pretrained network it fine-tunes (``init``; the space is then the fine-tuning space)."""

    trials: int = DEFAULT_TRIALS
    max_epochs: int = DEFAULT_MAX_EPOCHS
    metric: str = METRICS[0]
    seed: int = 0
    sampler: str = SAMPLERS[0]
    scheduler: str = SCHEDULERS[0]
    points: tuple[dict[str, Any], ...] = ()  # configs tried first, after the seed's recipe (and the prior's)
    prior: str = PRIORS[0]  # the built-in prior (search.tuning.prior) on a large data set, or none
    resources: Resources = Resources()
    init: Optional[Pretrained] = None
    round_images: Optional[int] = None  # a trial's epoch is a round of this many faces; None: by data size (sized_for)
    max_rounds: int = 0  # ... and its budget is this many rounds: max_epochs passes over the training faces
    large: bool = False  # the large data set's space (LARGE_DATA)
    cost_weight: float = 0.0  # ties within this many standard errors go to the faster config (search.tuning.cost)
    slots: int = 1  # trials (or training tasks) at once on the cluster, known once Ray has started

    @property
    def max_t(self) -> int:
        """A trial's budget in the epochs it reports: ``max_epochs``, or ``max_rounds`` on a large data set."""
        return self.max_rounds or self.max_epochs

    @property
    def startup_trials(self) -> int:
        """Random trials before TPE models the results: :data:`STARTUP_SHARE` of them, at most
        :data:`STARTUP_CAP`; under a time budget the start also ends at that share of its time."""
        return max(1, min(STARTUP_CAP, int(self.trials * STARTUP_SHARE + 1e-9)))

    @property
    def architecture(self) -> Optional[dict[str, Any]]:
        """The pretrained network's architecture, which the fine-tuning space keeps; None from scratch."""
        return self.init.architecture() if self.init else None

    def sized_for(self, n_train: int) -> "SearchSettings":
        """These settings for ``n_train`` training faces: on a large data set a trial reports, and the
        scheduler judges it, every :data:`ROUND_IMAGES` faces, so that its first rung comes in seconds
        rather than after whole passes."""
        images = round_images(n_train) if self.round_images is None else self.round_images
        return dataclasses.replace(self, round_images=images, large=is_large(n_train),
                                   max_rounds=math.ceil(self.max_epochs * n_train / images) if images else 0)


@dataclass(frozen=True)
class ConfirmSettings:
    """How many leading configs are cross-validated, in how many folds, split at which seed, ranked by what."""

    configs: Optional[int] = None  # 0: no confirmation, the search's ranking stands; None: by size (count)
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    metric: str = METRICS[0]

    def count(self, n_train: int) -> int:
        """How many configs are confirmed with ``n_train`` training faces: ``configs``, or by
        default :data:`DEFAULT_CONFIRM`, none on a large data set."""
        if self.configs is not None:
            return self.configs
        return 0 if is_large(n_train) else DEFAULT_CONFIRM


@dataclass(frozen=True)
class FinalSettings:
    """How the final model is built from the ranked configs."""

    ensemble: int = DEFAULT_ENSEMBLE
    epochs_scale: float = DEFAULT_FINAL_EPOCHS_SCALE
    mixup: float = DEFAULT_FINAL_MIXUP
    inputs: tuple[str, ...] = DEFAULT_FINAL_INPUTS
    seed_epochs: Optional[int] = None  # the seed recipe's retrain: its own 20 epochs, unless a budget cuts them


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides what a run computes (not where it writes or which cluster it uses)."""

    search: SearchSettings = SearchSettings()
    confirm: ConfirmSettings = ConfirmSettings()
    final: FinalSettings = FinalSettings()
    folds: Optional[int | str] = None  # the papers' protocol: K outer folds, or "loso" (search.folds); None: off
    time_budget_s: Optional[float] = None  # the one given (or the built-in faces'); None: none given
    small_data_budget_s: Optional[float] = None  # the bound of a small data set's run when none is given

    def budget_for(self, n_train: int) -> Optional[float]:
        """The run's time budget on ``n_train`` training faces: the one given, else the small data
        set's default below :data:`LARGE_DATA` faces, else none."""
        if self.time_budget_s is not None or is_large(n_train):
            return self.time_budget_s
        return self.small_data_budget_s

    def sized_for(self, n_train: int) -> "RunSettings":
        """The settings for ``n_train`` training faces: the search's rounds and space, and the budget."""
        return dataclasses.replace(self, search=self.search.sized_for(n_train), time_budget_s=self.budget_for(n_train))

    def on_cluster(self, slots: int) -> "RunSettings":
        """The settings on a cluster that runs ``slots`` trials at once (:func:`search.cluster.start_ray`)."""
        return dataclasses.replace(self, search=dataclasses.replace(self.search, slots=slots))


# ----------------------------------------------------------------------------- the flags

@dataclass(frozen=True)
class Flag:
    """One flag of ``python -m search.run``: its parser arguments, and its help once, for ``--help``
    and the README's table alike. ``shown``: the default as the table words it (None: the value);
    ``defines_run``: ``--resume`` takes it from the run's ``run.json``; ``before``: its value for a
    run saved before the flag existed."""

    name: str
    default: Any
    help: str
    type: Any = str
    shown: Optional[str] = None
    choices: Optional[tuple[str, ...]] = None
    nargs: Optional[str] = None
    metavar: Optional[str] = None
    defines_run: bool = True
    before: Any = None

    @property
    def dest(self) -> str:
        """The attribute name argparse gives it."""
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def default_text(self) -> str:
        """The default in words."""
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, (list, tuple)):
            return f"`{' '.join(self.default)}`"
        return f"`{self.default}`" if isinstance(self.default, str) else f"{self.default:g}" \
            if isinstance(self.default, float) else str(self.default)


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


FLAGS: tuple[Flag, ...] = (
    Flag("--trials", DEFAULT_TRIALS, "number of trials", type=int),
    Flag("--data", FIRST_RUN_DATA, "a folder of class folders (or FER2013's `train/` + `test/`), a pixel CSV "
         "(`emotion,pixels[,Usage]`), a manifest CSV (`path,label[,subject][,usage]`), or `synthetic[:N]`"),
    Flag("--faces", FACES[0], "`auto`: photos are cropped to their largest face, face crops left as they are; "
         "`crop`: every image cropped; `none`: only resized (see \"Getting data\")", choices=FACES, before="auto"),
    Flag("--split", "auto", "the held-out test split: " + ", ".join(f"`{s}`" for s in SPLITS) + " (see above)",
         choices=SPLITS),
    Flag("--folds", None, "the papers' protocol: K outer folds (`loso`: one per subject), by subject where there "
         "are subject ids, else by image; each fold is held out once while the whole run (search, confirmation, "
         "final model, the seed's recipe) goes on the others, and the report pools the folds' test faces; "
         "replaces `--split`, exports no model (see [The papers' protocol](#the-papers-protocol-k-fold-by-subject))",
         metavar="K", shown="off"),
    Flag("--max-epochs", DEFAULT_MAX_EPOCHS, "epoch budget of one trial, both phases of its schedule, in passes "
         "over the training faces", type=int),
    Flag("--round-images", None, f"a trial's epoch is a round of N training faces, so that on a large data set "
         "trials are reported and judged every round (on FER2013: 4-43 s on one core) instead of every pass "
         "(31-141 s); `0`: always a pass", type=int, metavar="N", before=0,
         shown=f"{ROUND_IMAGES} on {LARGE_DATA:,} training faces or more, else a pass"),
    Flag("--metric", METRICS[0], "what the search maximises: " + " or ".join(f"`{m}`" for m in METRICS),
         choices=METRICS),
    Flag("--points", None, "a JSON file of configs (an object or a list) tried first, after the seed's recipe, in "
         "the search space's names, e.g. an earlier report's `best_config`", shown="none"),
    Flag("--prior", PRIORS[0], f"`{PRIORS[0]}`: on {LARGE_DATA:,} training faces or more, the built-in prior's "
         "configs (chosen on FER2013's validation faces) are tried first, after the seed's recipe, and when the "
         "time budget is too short for a search to pay, the run says so and trains instead the prior's config "
         "best at the length its member gets (see [The built-in prior](#the-built-in-prior)); `none`: neither",
         choices=PRIORS, before="none"),
    Flag("--init", None, "fine-tune this model (a run's `best/` folder or its `model.keras`; `builtin`: the FER2013 "
         "model bundled with FER Tune) instead of searching networks from scratch: see "
         "[Fine-tuning a trained model](#fine-tuning-a-trained-model)",
         metavar="MODEL", shown="none"),
    Flag("--cost-weight", 0.0, "weigh accuracy against time: validation (and cross-validated) scores within W "
         "standard errors of the best count as a tie, which a config with epochs at most half as long wins, and "
         "the search's TPE counts a config 4 times as slow as W standard errors worse; on CK+'s 156 validation "
         "faces one standard error is about 3 points", type=float, metavar="W", shown="0", before=0.0),
    Flag("--ensemble", DEFAULT_ENSEMBLE, "the final model averages this many of the best configs", type=int,
         defines_run=False),
    Flag("--final-epochs-scale", DEFAULT_FINAL_EPOCHS_SCALE, "each final member trains for this many times its "
         "trial's epochs", type=float, defines_run=False),
    Flag("--final-mixup", DEFAULT_FINAL_MIXUP, "the final members also train with mixup of this Beta parameter",
         type=float, shown="0 (off)", defines_run=False),
    Flag("--final-inputs", list(DEFAULT_FINAL_INPUTS), "each final config trains once per input normalization "
         "named (" + ", ".join(f"`{n}`" for n in NORMALIZATIONS) + "), all averaged", nargs="+",
         metavar="NORMALIZATION", defines_run=False),
    Flag("--confirm", None, f"cross-validate this many of the best configs over train + validation and rank the "
         "final members by it; 0: by validation alone. On a large data set the validation part alone is precise "
         "to about a point, and the confirmation's share of a `--time-budget` goes to the final model", type=int,
         shown=f"{DEFAULT_CONFIRM}; none from {LARGE_DATA:,} training faces on", before=0),
    Flag("--confirm-folds", DEFAULT_FOLDS, "folds of that cross-validation, by subject where there are subject ids",
         type=int, before=DEFAULT_FOLDS),
    Flag("--sampler", SAMPLERS[0], "`startup`: random for two fifths of the search, then multivariate TPE; `tpe`: "
         "Optuna's `TPESampler` as it comes", choices=SAMPLERS, before=SAMPLERS[0]),
    Flag("--scheduler", SCHEDULERS[0], "`asha`: stop a trial at epochs 3 and 9 of 16 (in rounds: 1, 3, 9, ...) "
         f"unless among the best quarter of the last {ASHA_WINDOW} trials there; `hyperband`: Ray's asynchronous "
         "Hyperband; `none`: every trial runs all its epochs", choices=SCHEDULERS, before=SCHEDULERS[0]),
    Flag("--seed", 0, "seed of the sampler and of the confirmation's folds", type=int),
    Flag("--cpus-per-trial", 1.0, "CPUs per trial, and TensorFlow's threads in it", type=float, shown="1"),
    Flag("--gpus-per-trial", 0.0, "GPUs per trial", type=float, shown="0"),
    Flag("--time-budget", None, f"bound the whole run (`90s`, `30m`, `2h`; `{NO_BUDGET}`: no bound): after "
         f"start-up the search has {_pct(SEARCH_SHARE)} of it, the confirmation {_pct(CONFIRM_SHARE)}, the final "
         f"model {_pct(FINAL_SHARE)}, each sized to fit; `--resume` goes on with what is left",
         shown=f"`{SMALL_DATA_BUDGET}` below {LARGE_DATA:,} training faces, none from there on (`{FIRST_RUN_BUDGET}` "
               "on the built-in synthetic faces)"),
    Flag("--address", None, "address of a running Ray cluster; without it a local one is started", shown="none",
         defines_run=False),
    Flag("--output", "runs", "folder of runs (a path, or a `file://` URI)", defines_run=False),
    Flag("--name", None, "name of this run, its folder in `--output`", shown="a timestamp", defines_run=False),
    Flag("--resume", False, "continue the run `--name` in `--output`", shown="off", defines_run=False),
)
