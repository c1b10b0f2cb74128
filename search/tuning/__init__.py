"""The search itself: the space, the sampler (a random start, then TPE), the searcher and the
scheduler that Tune drives, the trainable every trial runs, the stopper at the budget's deadline,
the progress line and TensorBoard's trial runs, wired into one Tune run by :mod:`.tuner`;
:mod:`.trials` reads each trial back as a :class:`search.records.TrialRecord`."""
