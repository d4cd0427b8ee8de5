"""Generated blocks in the README: text between `<!-- <name>:start -->` and `<!-- <name>:end -->`.

`tools.publish_results` writes the pipeline's results table into one, `study.summarize --readme`
the study's verdict into another, so the README shows what the commands produced.
"""

from imdb_regularization.cli import StageError


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, replacement: str) -> str:
    """`text` with everything between the markers of block `name` replaced.

    Raises:
        StageError: the markers are missing or out of order.
    """
    start_marker, end_marker = markers(name)
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise StageError(f"README.md needs the lines {start_marker} and {end_marker} around the {name} block")
    return text[: start + len(start_marker)] + "\n" + replacement + "\n" + text[end:]
