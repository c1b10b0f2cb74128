"""FER Tune's core: data, model, augmentation, training, evaluation and export.

It knows nothing of Ray: the search in :mod:`search` wraps these functions.
"""

from fer_core.errors import ConfigError, DataError, FerInputError

__all__ = ["ConfigError", "DataError", "FerInputError"]
