"""The protocol's splits: hold out the test part once, then carve validation from the rest.

``random`` is stratified 80/20 at the seed notebook's seed; ``subject`` keeps each subject on
one side (the honest split for CK+, whose frames of a sequence are near-duplicates);
``usage`` follows a Usage column (FER2013: PublicTest validates, PrivateTest tests; where
the column has no PublicTest, validation is carved from Training at random, stratified).
:func:`make_splits` is the one place a run's three parts are made: the search sees
``train`` and ``val``, never ``test``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fer_core.dataset import Dataset
from fer_core.errors import DataError

SPLITS = ("auto", "random", "subject", "usage")
TEST_FRACTION = 0.2  # the seed notebook's 80/20 split
SPLIT_SEED = 42  # the seed notebook's random_state
# Validation carved from Training when a Usage column has no PublicTest: FER2013's own
# PublicTest is 11% of its non-test rows (3,589 of 32,298), so 10% keeps that proportion.
VAL_FRACTION = 0.1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """The three parts of the data: the search sees train and val, never test."""

    train: Dataset
    val: Dataset
    test: Dataset
    method: str


def make_splits(data: Dataset, method: str) -> Splits:
    """Hold out the test split once (the protocol's seed), then carve validation from the rest.

    Validation comes by the same method, except for a ``usage`` split whose rest holds only
    Training rows (a ``train/`` + ``test/`` folder without FER2013's file names, a CSV
    without PublicTest): then :data:`VAL_FRACTION` of it is carved at random, stratified
    by class, at the protocol's seed.
    """
    method = resolve_split(data, method)
    rest, test = split(data, method)
    if method == "usage" and set(rest.usage.tolist()) == {"Training"}:
        train, val = split(rest, "random", test_size=VAL_FRACTION)
        log.info("%s: only Training rows besides the test rows; validation is %d of them (%.0f%%, "
                 "stratified at random, seed %d)", data.source or "data set", len(val), 100 * VAL_FRACTION, SPLIT_SEED)
    else:
        train, val = split(rest, method)
    return Splits(train, val, test, method)


def outer_folds(data: Dataset, folds: int | str, seed: int = SPLIT_SEED) -> list[Splits]:
    """The papers' protocol: ``folds`` outer folds (an integer >= 2, or ``"loso"``, one per subject),
    each a :class:`Splits` whose test part is the fold and whose train and validation parts are
    carved from the other folds as :func:`make_splits` carves them. Every face is in exactly one
    test part.

    By subject where the data has subject ids (no person in a fold's test part and its other
    parts; stratified by class as far as the groups allow), else by image, stratified by class
    (the ``method`` of each :class:`Splits` says which). Too few subjects or faces of a class
    for ``folds`` raises :class:`DataError`.
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

    where = data.source or "data set"
    by_subject = data.groups is not None
    if folds == "loso":
        if not by_subject:
            raise DataError(f"folds 'loso': {where} has no subject ids; expected CK+ style file names or a "
                            "manifest with a subject column, or a number of folds")
        parts = LeaveOneGroupOut().split(np.zeros(len(data)), data.labels, data.groups)
    elif by_subject:
        subjects = len(np.unique(data.groups))
        if subjects < folds:
            raise DataError(f"folds {folds}: {where} has {subjects} subject(s); expected at least {folds}")
        parts = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(data)), data.labels,
                                                                                   data.groups)
    else:
        if data.class_counts().min() < folds:
            raise DataError(f"folds {folds}: a class of {where} has fewer than {folds} faces; expected at least "
                            f"{folds} per class")
        parts = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(data)), data.labels)
    method = "subject" if by_subject else "random"
    out = []
    for rest_idx, test_idx in parts:
        rest, test = data.subset(np.sort(rest_idx)), data.subset(np.sort(test_idx))
        train, val = split(rest, method, seed=seed)
        out.append(Splits(train, val, test, method))
    return out


def resolve_split(dataset: Dataset, method: str) -> str:
    """The concrete split method for ``method`` on this data set, checked.

    ``auto`` is ``subject`` when subject ids exist, else ``usage`` when the source has a
    Usage column with a test part, else ``random``. ``subject`` without subject ids and
    ``usage`` without a Usage column raise :class:`DataError`.
    """
    if method not in SPLITS:
        raise DataError(f"split {method!r}: expected one of {', '.join(SPLITS)}")
    if method == "auto":
        if dataset.groups is not None:
            return "subject"
        if dataset.usage is not None and len(set(dataset.usage.tolist()) - {"Training"}) > 0:
            return "usage"
        return "random"
    if method == "subject" and dataset.groups is None:
        raise DataError(f"split 'subject' needs subject ids, and {dataset.source or 'this data set'} has none "
                        "(expected CK+ style file names like S010_004_00000017.png, or a manifest CSV "
                        "with a subject column); use --split random")
    if method == "usage" and dataset.usage is None:
        raise DataError(f"split 'usage' needs a Usage column, and {dataset.source or 'this data set'} has none; "
                        "use --split random")
    return method


def split(dataset: Dataset, method: str = "auto", test_size: float = TEST_FRACTION,
          seed: int = SPLIT_SEED) -> tuple[Dataset, Dataset]:
    """Split into (train, test) by ``method``: random, subject, usage or auto.

    ``random`` is stratified by class; ``subject`` keeps each subject on one side and
    stratifies as far as the groups allow; ``usage`` holds out the last tier present of
    Training < PublicTest < PrivateTest, so calling it again on the train part carves
    the validation set FER2013 intends. Deterministic for a given seed.
    """
    method = resolve_split(dataset, method)
    if method == "usage":
        train_idx, test_idx = _usage_split(dataset)
    elif method == "subject":
        train_idx, test_idx = _subject_split(dataset, test_size, seed)
    else:
        train_idx, test_idx = _random_split(dataset, test_size, seed)
    return dataset.subset(np.sort(train_idx)), dataset.subset(np.sort(test_idx))


def _random_split(dataset: Dataset, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    counts = dataset.class_counts()
    for name, count in zip(dataset.class_names, counts):
        if count < 2:
            raise DataError(f"{dataset.source or 'data set'}: class {name!r} has {count} image(s); "
                            "a stratified split needs at least 2 per class")
    n_test = int(np.ceil(test_size * len(dataset)))
    if n_test < dataset.n_classes or len(dataset) - n_test < dataset.n_classes:
        raise DataError(f"{dataset.source or 'data set'}: {len(dataset)} images are too few to split "
                        f"{dataset.n_classes} classes {1 - test_size:.0%}/{test_size:.0%} with every class on both sides")
    index = np.arange(len(dataset))
    train, test = train_test_split(index, test_size=test_size, stratify=dataset.labels, random_state=seed)
    return train, test


def _subject_split(dataset: Dataset, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, int(round(1 / test_size)))
    n_groups = len(np.unique(dataset.groups))
    if n_groups < n_splits:
        raise DataError(f"{dataset.source or 'data set'}: {n_groups} subject(s) are too few for a "
                        f"subject split holding out 1/{n_splits}; expected at least {n_splits}")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, test = next(folds.split(np.zeros(len(dataset)), dataset.labels, dataset.groups))
    return train, test


def _usage_split(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    usage = dataset.usage
    for tier in ("PrivateTest", "PublicTest"):
        held = usage == tier
        if held.any() and (~held).any():
            return np.flatnonzero(~held), np.flatnonzero(held)
    values = ", ".join(sorted(set(usage.tolist())))
    raise DataError(f"{dataset.source or 'data set'}: Usage column holds only {values}; a usage split needs "
                    "Training rows and PublicTest or PrivateTest rows")
