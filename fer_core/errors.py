"""The one error type for user mistakes, and how command lines report it."""

from __future__ import annotations


class FerInputError(ValueError):
    """Bad input from the user: a file, a row, a folder or a setting.

    The message names *where* (file and line, folder, flag) and *what was expected*, and
    fits on one line, so that command-line entry points can print it as is and exit with
    status 2, the way argparse does for a bad flag.
    """


class DataError(FerInputError):
    """A data set that cannot be read: bad file, bad row, bad folder, too few classes."""


class ConfigError(FerInputError):
    """A hyperparameter configuration that cannot be built or trained."""


EXIT_USAGE = 2  # the conventional exit status of a command-line usage error (argparse, BSD sysexits)


def run_cli(main, argv=None, prog: str = "fer-tune") -> int:
    """Run ``main(argv)`` and turn a :class:`FerInputError` into one line and status 2.

    User mistakes get no traceback: ``prog: error: <message>`` on stderr, as argparse
    prints for a bad flag. Anything else is a bug or a fault and propagates.
    """
    import sys

    try:
        return int(main(argv) or 0)
    except FerInputError as exc:
        message = " ".join(str(exc).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
