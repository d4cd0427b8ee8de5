"""The study's grid: which points it trains, and how they are grouped into DVC experiments.

A point is one network trained once: a width (`data.num_words`), a regularizer at a rate (or
none), and a seed. The points of one width and seed form one experiment, `study-w<width>-s<seed>`:
its `models` holds one entry per point (`basic`, `l1_0p001`, `l2_1e-05`, ...), so it trains them
all in one `dvc exp run` while each point keeps its own `train@<key>`/`evaluate@<key>` stages,
its own metrics file and its own run-cache entry. The experiment's fixed costs (a temporary
workspace, restoring `fetch` and `encode`, a git commit) are paid once for all its points.
"""

import math
from dataclasses import dataclass

from imdb_regularization.cli import StageError
from imdb_regularization.params import FIRST_WORD_INDEX, MAX_NUM_WORDS, MAX_RATE, MAX_SEED

EXPERIMENT_PREFIX = "study-"
BASELINE = "none"  # the basic model's regularizer; it has no rate to vary
STUDIED = ("l1", "l2")
# Every point holds out this fraction of its training set, split by this seed whatever the
# point's own seed: the rate is chosen on this split, and the test set only reports.
VALIDATION_FRACTION = 0.2
VALIDATION_SEED = 0
# Each experiment is a git ref and each point a stage; beyond this many points the bookkeeping
# alone would take hours, which is a sign of a mistyped grid.
MAX_POINTS = 2_000
# The relative cost of a point grows with its width: measured on the archive with sparse rows,
# a 10,000-word point trains in about 3.7 times a 100-word one's time. Used to order the work
# and to estimate the time left, never for results.
WIDTH_COST_PER_WORD = 2.7 / 10_000


class StudyError(StageError):
    """The study cannot run or be summarized as asked."""


def model_label(regularizer: str) -> str:
    """What the study calls a model: its regularizer, or `basic` for none."""
    return "basic" if regularizer == BASELINE else regularizer


def rate_label(rate: float) -> str:
    """How a rate appears in a model key: short (`0p0001`, `1e-05`), so close rates can share it."""
    return f"{rate:g}".replace(".", "p")


@dataclass(frozen=True)
class Point:
    """One training of the study: a width, a regularizer at a rate, a seed."""

    width: int
    regularizer: str
    rate: float
    seed: int

    @property
    def model_key(self) -> str:
        """Its entry in the experiment's `models`, hence its stages `train@<key>` and `evaluate@<key>`."""
        if self.regularizer == BASELINE:
            return "basic"
        return f"{self.regularizer}_{rate_label(self.rate)}"

    @property
    def experiment(self) -> str:
        return experiment_name(self.width, self.seed)

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.model_key}"

    @property
    def cost(self) -> float:
        return 1 + WIDTH_COST_PER_WORD * self.width


def experiment_name(width: int, seed: int) -> str:
    return f"{EXPERIMENT_PREFIX}w{width}-s{seed}"


@dataclass(frozen=True)
class StudyExperiment:
    """The points of one width and seed, run as one DVC experiment."""

    width: int
    seed: int
    points: tuple[Point, ...]

    @property
    def name(self) -> str:
        return experiment_name(self.width, self.seed)

    @property
    def cost(self) -> float:
        return sum(point.cost for point in self.points)

    def without(self, failed: set[Point]) -> "StudyExperiment":
        return StudyExperiment(self.width, self.seed, tuple(point for point in self.points if point not in failed))


def _number_list(text: str, flag: str, kind: type) -> list:
    try:
        return [kind(item) for item in text.split(",")]
    except ValueError:
        raise StudyError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def parse_rates(text: str) -> tuple[float, ...]:
    """Rates from a comma-separated list such as `1e-5,1e-4`: distinct, above 0, at most `MAX_RATE`; increasing.

    Raises:
        StudyError: an item is not such a rate, or two rates would give their models the same key.
    """
    rates = _number_list(text, "--rates", float)
    if not all(math.isfinite(rate) and 0 < rate <= MAX_RATE for rate in rates) or len(set(rates)) != len(rates):
        raise StudyError(f"--rates must be distinct numbers above 0 and at most {MAX_RATE:g}, got {text!r}")
    labelled: dict[str, float] = {}
    for rate in sorted(rates):
        other = labelled.setdefault(rate_label(rate), rate)
        if other != rate:
            # Points are told apart by key: the second would replace the first.
            raise StudyError(
                f"--rates {other!r} and {rate!r} would both be named {rate_label(rate)} in model keys; "
                "pick rates that differ in their first 6 significant digits"
            )
    return tuple(sorted(rates))


def parse_widths(text: str) -> tuple[int, ...]:
    """Widths (`data.num_words`) from a comma-separated list such as `100,1000,10000`: distinct; increasing.

    Raises:
        StudyError: an item is not a whole number the pipeline accepts as `data.num_words`.
    """
    widths = _number_list(text, "--num-words", int)
    if not all(FIRST_WORD_INDEX < width <= MAX_NUM_WORDS for width in widths) or len(set(widths)) != len(widths):
        raise StudyError(
            f"--num-words must be distinct whole numbers from {FIRST_WORD_INDEX + 1} to {MAX_NUM_WORDS:,}, got {text!r}"
        )
    return tuple(sorted(widths))


def plan(widths: tuple[int, ...], rates: tuple[float, ...], seeds: int, first_seed: int) -> list[StudyExperiment]:
    """Every experiment of the study: seed by seed, so a study cut short has whole curves for its first seeds;
    within a seed the widest first, so the longest work starts early and the short work fills the gaps.
    """
    if seeds < 1:
        raise StudyError(f"--seeds must be at least 1, got {seeds}")
    per_experiment = 1 + len(STUDIED) * len(rates)
    size = len(widths) * seeds * per_experiment
    if size > MAX_POINTS or first_seed + seeds - 1 > MAX_SEED:
        raise StudyError(
            f"--num-words, --rates and --seeds ask for {size:,} trainings with seeds up to {first_seed + seeds - 1:,}: "
            f"at most {MAX_POINTS:,} trainings and seeds up to {MAX_SEED:,}"
        )
    experiments = []
    for seed in range(first_seed, first_seed + seeds):
        for width in sorted(widths, reverse=True):
            points = [Point(width, BASELINE, 0.0, seed)]
            points += [Point(width, regularizer, rate, seed) for regularizer in STUDIED for rate in rates]
            experiments.append(StudyExperiment(width, seed, tuple(points)))
    return experiments


def select_shard(experiments: list[StudyExperiment], shard: str) -> list[StudyExperiment]:
    """The experiments machine K of N runs (`shard` is "K/N", K from 1): every N-th from the K-th."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise StudyError(f"--shard must be K/N, e.g. 2/3, got {shard!r}") from None
    if not 1 <= index <= count:
        raise StudyError(f"--shard K/N needs 1 <= K <= N, got {shard!r}")
    if index > len(experiments):
        raise StudyError(
            f"--shard {shard}: the study has only {len(experiments)} experiments, so machine {index} has none"
        )
    return experiments[index - 1 :: count]


def models_settings(points: tuple[Point, ...]) -> list[str]:
    """The `-S` values that make `models` exactly these points' models (flow-style YAML, as DVC's overrides read it).

    `models` is deleted first: a dict given to an existing key is merged into it, and the
    project's own models would stay in every experiment's params.
    """
    entries = ", ".join(
        f"{point.model_key}: {{regularizer: {point.regularizer}, rate: {point.rate!r}}}" for point in points
    )
    return ["~models", f"+models={{{entries}}}"]


def experiment_settings(experiment: StudyExperiment, overrides: list[str]) -> list[str]:
    """The params of one experiment, as `-S` values: the shared split, the user's overrides, its width, seed and models.

    The user's overrides come after the validation split, so `-S train.validation=0.1` changes it,
    and before what defines the points, which no override may change.
    """
    return [
        f"train.validation={VALIDATION_FRACTION!r}",
        f"train.validation_seed={VALIDATION_SEED}",
        *overrides,
        f"data.num_words={experiment.width}",
        f"train.seed={experiment.seed}",
        *models_settings(experiment.points),
    ]


def run_arguments(experiment: StudyExperiment, overrides: list[str], name: str | None = None) -> list[str]:
    """The `dvc exp run` arguments of one experiment: evaluate every point's model, in a temporary workspace.

    Not `--keep-going`: after a stage fails, or is stopped by Ctrl-C, DVC would run the next one.
    A point that fails ends its experiment; the runner runs it again without that point, and the
    points finished before it come back from the run-cache. `name` replaces the experiment's own.
    """
    arguments = ["exp", "run", "--temp", "--name", name or experiment.name]
    arguments += [f"evaluate@{point.model_key}" for point in experiment.points]
    settings = experiment_settings(experiment, overrides)
    return arguments + [argument for setting in settings for argument in ("-S", setting)]
