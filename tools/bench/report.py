"""The benchmark's targets (issue: speed) checked against one run's results, and the markdown table."""

import os
from itertools import pairwise
from typing import Any

EQUIVALENT_VAL_LOSS = 1e-6
# The scale targets (issue: cost follows the words a review has), in MB of 2**20 bytes.
WIDE = 10_000
TRAIN_PEAK_MB = 1_000
PARALLEL_PEAK_MB = 3_000
WIDEST_PEAK_MB = 8_000
# The study's target (issue 14): its wall time at most this many times its points' own stage time per job.
STUDY_OVERHEAD = 1.5


def _target(name: str, measured: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "met": bool(met)}


def _growth(values: list[float]) -> list[float]:
    """The factor from each value to the next."""
    return [round(after / before, 2) for before, after in pairwise(values)]


def _speed_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    notebook = results["notebook"]["seconds"]
    cold, parallel, change = results["cold"], results["parallel_cold"], results["one_change"]
    expected = [f"train@{change['model']}", f"evaluate@{change['model']}", "plots"]
    noop = results["noop"]["repro_seconds"] / results["noop"]["status_seconds"]
    return [
        _target("cold `dvc repro` ÷ notebook ≤ 1.0", f"{cold['seconds'] / notebook:.2f}", cold["seconds"] <= notebook),
        _target(
            "cold, parallel trainings ÷ notebook ≤ 0.6",
            f"{parallel['seconds'] / notebook:.2f}",
            parallel["seconds"] <= 0.6 * notebook,
        ),
        _target(
            "parallel run leaves dvc.lock and metrics as the sequential one",
            "identical" if not parallel["lock_differences"] and parallel["metrics_identical"] else "different",
            not parallel["lock_differences"] and parallel["metrics_identical"],
        ),
        _target(
            "one change ÷ notebook ≤ 0.3", f"{change['seconds'] / notebook:.2f}", change["seconds"] <= 0.3 * notebook
        ),
        _target(
            "one change reruns only " + ", ".join(expected),
            ", ".join(change["stages_run"]) or "nothing",
            sorted(change["stages_run"]) == sorted(expected),
        ),
        _target("no-op `dvc repro` ≤ 1.5 × `dvc status`", f"{noop:.2f} ×", noop <= 1.5),
    ]


def _other_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    encode = results["encode"]
    first = encode[min(encode)]
    speedup = first["notebook_seconds"] / first["pipeline_seconds"]
    widths = sorted(encode)
    steps = _growth(widths)
    time_growth = _growth([encode[width]["seconds"] for width in widths])
    memory_growth = _growth([encode[width]["peak_rss_mb"] for width in widths])
    importing = sorted(
        stage
        for stage, record in results["cold"]["stages"].items()
        if record["tensorflow"] and not stage.startswith("train@")
    )
    bare, stage_fit = results["training"][0], results["training"][1]
    return [
        _target(
            f"encode's multi-hot ≥ 20 × the notebook's loop at num_words={min(encode)}",
            f"{speedup:.0f} ×",
            speedup >= 20,
        ),
        _target(
            f"encode time and peak RSS grow no faster than num_words (× {steps})",
            f"time × {time_growth}, RSS × {memory_growth}",
            all(growth <= step for growth, step in zip(time_growth + memory_growth, steps * 2, strict=True)),
        ),
        _target("no stage but train imports TensorFlow", ", ".join(importing) or "none does", not importing),
        _target(
            "train stage's fit ≥ bare `model.fit` (samples/s, same val losses)",
            f"{stage_fit['samples_per_second']} vs {bare['samples_per_second']} samples/s, "
            f"val_loss Δ {stage_fit['max_val_loss_difference']:.1e}",
            stage_fit["samples_per_second"] >= bare["samples_per_second"]
            and stage_fit["max_val_loss_difference"] <= EQUIVALENT_VAL_LOSS,
        ),
    ]


def _scale_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_width = {row["num_words"]: row for row in rows}
    targets = []
    wide, narrow = by_width.get(WIDE), by_width.get(min(by_width))
    if wide and "notebook" in wide and not wide["notebook"]["out_of_memory"]:
        ratio = wide["parallel"]["seconds"] / wide["notebook"]["seconds"]
        targets.append(_target(f"{WIDE:,} words: cold parallel run ÷ notebook ≤ 0.25", f"{ratio:.2f}", ratio <= 0.25))
    if wide:
        peak, memory = wide["train"]["peak_rss_mb"], wide["parallel"]["peak_pss_mb"]
        targets += [
            _target(f"{WIDE:,} words: one train stage's peak RSS ≤ 1 GB", f"{peak:.0f} MB", peak <= TRAIN_PEAK_MB),
            _target(
                f"{WIDE:,} words: the whole parallel run's memory (its processes' summed PSS) ≤ 3 GB",
                f"{memory:.0f} MB",
                memory <= PARALLEL_PEAK_MB,
            ),
        ]
    if wide and narrow and narrow is not wide:
        growth = wide["train"]["seconds"] / narrow["train"]["seconds"]
        targets.append(
            _target(
                f"{WIDE:,} words: train stage time ≤ 1.5 × at {narrow['num_words']:,}",
                f"{growth:.2f} × ({wide['train']['seconds']:.1f} s ÷ {narrow['train']['seconds']:.1f} s, medians)",
                growth <= 1.5,
            )
        )
    for row in rows:
        if row["num_words"] > WIDE:
            parallel = row["parallel"]
            targets.append(
                _target(
                    f"{row['num_words']:,} words: the whole pipeline, 3 trainings at once, in < 8 GB",
                    f"{parallel['jobs']} at once, {parallel['peak_pss_mb']:.0f} MB",
                    parallel["jobs"] == 3 and parallel["peak_pss_mb"] < WIDEST_PEAK_MB,
                )
            )
    return targets


def study_overhead(row: dict[str, Any]) -> dict[str, float]:
    """A study row's points' own time (Σ of their train and evaluate stages), that per job, and wall ÷ it.

    The ratio is 1 for a study that only runs its points, `jobs` at a time, with no gaps: what
    lies above it is DVC's experiment machinery and the study's scheduling.
    """
    stage_seconds = row["train_seconds"] + row["evaluate_seconds"]
    per_job = stage_seconds / row["jobs"]
    return {
        "stage_seconds": round(stage_seconds, 3),
        "per_job_seconds": round(per_job, 3),
        "ratio": round(row["seconds"] / per_job, 3) if per_job else float("inf"),
    }


def _study_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The target on the current study's row (the one without a revision); earlier studies are for comparison."""
    targets = []
    for row in rows:
        if row["revision"] is None:
            ratio = study_overhead(row)["ratio"]
            per_job = f"Σ train + evaluate ÷ {row['jobs']} jobs"
            targets.append(
                _target(
                    f"study of {row['points']} new points: wall ≤ {STUDY_OVERHEAD} × ({per_job})",
                    f"{ratio:.2f} ×, {row['train_runs']} of {row['points']} points trained",
                    ratio <= STUDY_OVERHEAD and row["train_runs"] == row["points"],
                )
            )
    return targets


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue with its measured value and whether it is met."""
    scale = _scale_targets(results["scale"]) if results.get("scale") else []
    study = _study_targets(results["study"]) if results.get("study") else []
    return {"targets": _speed_targets(results) + _other_targets(results) + study + scale}


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    aligned = ["---:" if index else "---" for index in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(aligned) + " |",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
        "",
    ]


def _runs_table(results: dict[str, Any]) -> list[str]:
    notebook = results["notebook"]["seconds"]
    change, noop = results["one_change"], results["noop"]
    jobs = results["parallel_cold"]["jobs"]
    runs = [
        ("notebook's recipe, one process (reference)", notebook),
        ("cold `dvc repro`, empty cache and workspace", results["cold"]["seconds"]),
        (
            f"cold `python -m tools.parallel{f' -j {jobs}' if jobs else ''}` (trainings at once)",
            results["parallel_cold"]["seconds"],
        ),
        (f"one change (`models.{change['model']}.rate` → {change['rate']:g}), `dvc repro`", change["seconds"]),
        (f"no-op `dvc repro` (median of {noop['repeats']})", noop["repro_seconds"]),
        (f"`dvc status`, same repo (median of {noop['repeats']})", noop["status_seconds"]),
    ]
    return _table(
        ["run", "seconds", "÷ notebook"],
        [[name, f"{seconds:.1f}", f"{seconds / notebook:.2f}"] for name, seconds in runs],
    )


def _stages_table(results: dict[str, Any]) -> list[str]:
    cold, parallel = results["cold"]["stages"], results["parallel_cold"]["stages"]
    rows = [
        [
            f"`{stage}`",
            f"{record['seconds']:.1f}",
            f"{record['peak_rss_mb']:.0f}",
            "yes" if record["tensorflow"] else "no",
            f"{parallel[stage]['seconds']:.1f}" if stage in parallel else "–",
        ]
        for stage, record in cold.items()
    ]
    overhead = results["cold"]["seconds"] - results["cold"]["stage_seconds"]
    rows.append(["DVC itself (cold run − its stages)", f"{overhead:.1f}", "", "", ""])
    return _table(["stage", "seconds", "peak RSS (MB)", "imports TensorFlow", "seconds, parallel run"], rows)


def _encode_table(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{width:,}",
            f"{values['seconds']:.1f}",
            f"{values['peak_rss_mb']:.0f}",
            f"{values['pipeline_seconds']:.3f}",
            f"{values['notebook_seconds']:.3f}" if "notebook_seconds" in values else "–",
        ]
        for width, values in sorted(results["encode"].items())
    ]
    return _table(
        ["num_words", "encode stage, seconds", "peak RSS (MB)", "multi-hot step, seconds", "notebook's loop, seconds"],
        rows,
    )


def _training_table(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            variant["variant"],
            f"{variant['seconds']:.1f}",
            f"{variant['samples_per_second']:,}",
            f"{variant['max_val_loss_difference']:.1e}",
        ]
        for variant in results["training"]
    ]
    return _table(["fit (one model, compile to end of fit)", "seconds", "samples/s", "max val_loss difference"], rows)


def _notebook_cells(row: dict[str, Any]) -> list[str]:
    notebook = row.get("notebook")
    if notebook is None:
        return ["not run", "–"]
    if notebook["out_of_memory"]:
        return [f"out of memory after {notebook['seconds']:.0f} s", f"> {notebook['ceiling_mb']:,} (stopped)"]
    return [f"{notebook['seconds']:.1f}", f"{notebook['peak_rss_mb']:,.0f}"]


def _scale_table(rows: list[dict[str, Any]]) -> list[str]:
    table_rows = []
    for row in rows:
        notebook, parallel = row.get("notebook"), row["parallel"]
        ratio = (
            f"{parallel['seconds'] / notebook['seconds']:.2f}" if notebook and not notebook["out_of_memory"] else "–"
        )
        table_rows.append(
            [
                f"{row['num_words']:,}",
                *_notebook_cells(row),
                f"{parallel['seconds']:.1f}",
                ratio,
                f"{parallel['peak_pss_mb']:,.0f} / {parallel['peak_rss_mb']:,.0f}",
                str(parallel["jobs"]),
                row["train"]["input"],
                f"{row['train']['seconds']:.1f}",
                f"{row['train']['peak_rss_mb']:,.0f}",
                f"{row['encode']['seconds']:.1f}",
                f"{row['encode']['peak_rss_mb']:,.0f}",
            ]
        )
    return _table(
        [
            "num_words",
            "notebook, s",
            "notebook peak MB",
            "cold parallel run, s",
            "÷ notebook",
            "parallel run peak MB (PSS / RSS, all processes)",
            "trainings at once",
            "train input",
            f"one train stage, s (median of {len(rows[0]['train']['runs_seconds'])} runs)",
            "train peak RSS MB",
            "encode, s",
            "encode peak RSS MB",
        ],
        table_rows,
    )


def _floor_table(rows: list[dict[str, Any]]) -> list[str]:
    """Where one train stage's time goes at FLOOR_WIDTH, against the floor of its non-zeros and its kernel."""
    row = next((row for row in rows if "floor" in row), None)
    if row is None:
        return []
    floor, stage = row["floor"], row["train"]["seconds"]
    parts = [
        (f"one train stage, measured (the median of {len(row['train']['runs_seconds'])} runs)", stage),
        ("start-up: Python, reading the rows, `import tensorflow`", floor["start_up_seconds"]),
        ("its training (`fit`), as the stage runs it (below: taken apart)", floor["fit_seconds"]),
        ("saving, and what else lies outside `fit`", stage - floor["start_up_seconds"] - floor["fit_seconds"]),
        (
            "timed alone: the first layer's products, a call per batch "
            f"({floor['products_rate_gmacs']} G multiply-adds/s)",
            floor["products_seconds"],
        ),
        (
            "timed alone: kernel update, fused Adam and the penalty on every num_words × units weight, every step",
            floor["kernel_update_seconds"],
        ),
        (
            "timed alone: batching, the rows put in shuffled order once and sliced into batches every epoch",
            floor["batching_seconds"],
        ),
        (
            f"floor of the kernel update: Adam's {floor['kernel_update_passes']} passes over num_words × units "
            f"arrays (weights, gradient, moments) every step ({floor['floor_kernel_update_bytes'] / 1e9:.0f} GB "
            f"in all) at {floor['memory_rate_gbs']} GB/s, the rate an in-place TensorFlow update streams memory here",
            floor["floor_kernel_update_seconds"],
        ),
        (
            f"floor: start-up + ones × units multiply-adds ({floor['floor_multiply_adds'] / 1e9:.0f} G) at the dense "
            f"product's {floor['dense_rate_gmacs']} G/s + the kernel update's floor",
            floor["floor_seconds"],
        ),
    ]
    fits = [
        [
            "the stage's batching (`network.shuffled_sparse_batches`)",
            floor["fit_seconds"],
            floor["fit_keras_adam_seconds"],
        ],
        [
            "one pre-built batch at every step",
            floor["fit_one_batch_seconds"],
            floor["fit_one_batch_keras_adam_seconds"],
        ],
    ]
    return [
        f"Where one train stage's time goes at num_words={row['num_words']:,} ({floor['ones_per_row']} ones a row); "
        "a part timed alone may take more or less than the same work inside a training, where it shares two "
        "cores and their caches with the rest:",
        "",
        *_table(
            ["part", "seconds", "÷ stage"], [[name, f"{value:.1f}", f"{value / stage:.2f}"] for name, value in parts]
        ),
        "Its `fit` without batching, with Keras' own Adam in place of the fused one, and both (seconds; the best "
        f"of {floor['fit_rounds']} trainings each, in one process; what is left without batching is Keras' steps, "
        "the layers, validation, and Adam and the penalty on the kernel):",
        "",
        *_table(
            ["batches", "fused Adam (the stage)", "Keras' Adam"],
            [[name, f"{fused:.1f}", f"{keras_adam:.1f}"] for name, fused, keras_adam in fits],
        ),
        *_wide_costs_table(floor),
    ]


def _wide_costs_table(floor: dict[str, Any]) -> list[str]:
    """The stage's `fit` without each of its first layer's costs that a 100-word training hardly has, then all three."""
    fit = floor["fit_seconds"]
    fits = [
        (
            "the first layer's products (training and validation) replaced by zeros of their shapes",
            floor["fit_free_products_seconds"],
        ),
        ("without the L1/L2 penalty (of both hidden layers)", floor["fit_without_penalty_seconds"]),
        (
            "Adam's step replaced by fused gradient descent: 3 passes over the first kernel's arrays, not 7",
            floor["fit_descent_seconds"],
        ),
        ("all three at once", floor["fit_without_first_layer_costs_seconds"]),
    ]
    # The noise: how far apart one variant's own trainings came out.
    spread = max(max(runs) - min(runs) for runs in floor["fit_runs_seconds"].values())
    return [
        "The same `fit` with each of the first layer's costs that a 100-word training hardly has taken out of "
        f"it (the best of {floor['fit_rounds']} trainings each, the variants taking turns; what taking a cost out "
        "saves is its cost inside a training, where it shares the cores and the caches; one variant's own "
        f"trainings came out up to {spread:.1f} s apart, so a saving that small, or below zero, is noise):",
        "",
        *_table(
            ["`fit`", "seconds", "saved"],
            [["as the stage runs it", f"{fit:.1f}", "–"]]
            + [[name, f"{seconds:.1f}", f"{fit - seconds:.1f}"] for name, seconds in fits],
        ),
    ]


_EARLIER_STUDY_NOTE = [
    "An earlier `study/` runs the same grid its own way (before issue 14: one queued experiment per point);",
    "its points validate on params.yaml's `train.validation` (the test set), the current study's on a fifth",
    "held out of the training set, so their stages take different times: compare the ratios.",
    "",
]


def _study_table(rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    table_rows = []
    for row in rows:
        overhead = study_overhead(row)
        table_rows.append(
            [
                "current `study/`" if row["revision"] is None else f"`study/` of {row['revision']}",
                str(row["points"]),
                f"{row['train_runs']} / {row['evaluate_runs']}",
                f"{row['seconds']:.1f}",
                f"{overhead['stage_seconds']:.1f}",
                f"{overhead['per_job_seconds']:.1f}",
                f"{overhead['ratio']:.2f}",
                f"≤ {STUDY_OVERHEAD}",
            ]
        )
    return [
        f"`python -m study.run --rates {first['rates']} --seeds {first['seeds']} --jobs {first['jobs']}` at "
        f"num_words={first['num_words']:,}, each in a fresh copy whose `fetch` and `encode` had run (unmeasured):",
        "every point is new. Σ: the train and evaluate stages' own wall times (`tools/bench/stage_hook`).",
        "",
        *_table(
            [
                "study",
                "points",
                "train / evaluate stages run",
                "wall, s",
                "Σ train + evaluate, s",
                "Σ ÷ jobs, s",
                "wall ÷ (Σ ÷ jobs)",
                "target",
            ],
            table_rows,
        ),
        *(_EARLIER_STUDY_NOTE if any(row["revision"] is not None for row in rows) else []),
    ]


def markdown(summary: dict[str, Any], results: dict[str, Any]) -> str:
    """The README-ready report of one run."""
    load = results["load_average"]
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in results["notebook"]["seconds_by_phase"].items())
    lines = [
        f"Machine: {os.cpu_count()} cores; 1-minute load average {load['before'][0]:.1f} before the run, "
        f"{load['after'][0]:.1f} after. One run; ratios are to the notebook's time in the same run.",
        "",
        *_table(
            ["target", "measured", "met"],
            [
                [target["target"], target["measured"], "met" if target["met"] else "**not met**"]
                for target in summary["targets"]
            ],
        ),
        *_runs_table(results),
        f"The notebook's time: {phases}.",
        "",
        *_stages_table(results),
        *_encode_table(results),
        *_training_table(results),
    ]
    if results.get("study"):
        lines += ["## The study's overhead", "", *_study_table(results["study"])]
    if results.get("scale"):
        lines += [
            "## Scale: num_words from 100 to above the vocabulary",
            "",
            "Each row in a fresh copy with that `data.num_words`; memory in MB of 2**20 bytes. The parallel run's",
            "memory is the peak of all its processes' summed PSS (what the run adds to an idle machine) and RSS",
            "(shared libraries counted once per process); a stage's is its peak RSS (VmHWM).",
            "",
            *_scale_table(results["scale"]),
            "![Time and peak memory against num_words, log-log](scale.png)",
            "",
            *_floor_table(results["scale"]),
        ]
    return "\n".join(lines)
