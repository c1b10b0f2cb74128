"""FER Tune's search: Ray Tune + Optuna + ASHA around :mod:`fer_core`. Run ``python -m search.run``."""
