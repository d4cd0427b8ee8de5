"""What every stage's `__main__` shares: logging to the stage log and clean failures."""

import logging
import sys
from collections.abc import Callable


class StageError(Exception):
    """A failure the user can fix (bad params, bad data, no network); shown without a traceback."""


def run(main: Callable[[], None]) -> None:
    """Run a stage's `main()`; a `StageError` ends it with its message and exit code 1."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        main()
    except StageError as error:
        logging.getLogger("stages").error("%s", error)
        sys.exit(1)
