"""`tools.parallel`'s plan: which stages of a group run at once, what follows each, and its --jobs argument.

The command itself, run on copies of the project, is tested in tests/e2e/test_parallel.py.
"""

import argparse

import pytest

from tools.parallel import ParallelError, available_memory, followers, jobs_that_fit, parse_jobs, plan_group


def _graph(**upstream: str) -> dict[str, set[str]]:
    return {stage: set(names.split()) for stage, names in upstream.items()}


def test_plan_group_finds_the_members_and_their_upstream():
    graph = _graph(fetch="", encode="fetch", **{"train@a": "encode", "train@b": "encode", "plots": "train@a train@b"})
    assert plan_group(graph, "train") == (["train@a", "train@b"], ["encode"])


def test_followers_are_the_stages_that_need_nothing_but_one_member_and_its_inputs():
    graph = _graph(
        fetch="",
        encode="fetch",
        **{
            "train@a": "encode",
            "train@b": "encode",
            "evaluate@a": "train@a encode",
            "evaluate@b": "train@b fetch",
            "compare": "train@a train@b",
            "plots": "evaluate@a evaluate@b",
        },
    )
    assert followers(graph, ["train@a", "train@b"]) == {"train@a": ["evaluate@a"], "train@b": ["evaluate@b"]}


def test_plan_group_refuses_members_that_depend_on_each_other():
    graph = _graph(encode="", **{"train@a": "encode", "train@b": "train@a"})
    with pytest.raises(ParallelError, match="train@b depends on train@a"):
        plan_group(graph, "train")


def test_plan_group_refuses_a_group_that_is_not_there():
    with pytest.raises(ParallelError, match="no foreach stages named fit@"):
        plan_group(_graph(train="", plots="train"), "fit")


@pytest.mark.parametrize("text", ["0", "-1", "two", ""])
def test_jobs_must_be_a_whole_number_of_at_least_one(text):
    with pytest.raises(argparse.ArgumentTypeError, match="whole number >= 1"):
        parse_jobs(text)


def test_the_default_jobs_never_start_more_trainings_than_fit_in_memory():
    gigabyte = 2**30
    assert jobs_that_fit(3, training_bytes=1 * gigabyte, available_bytes=20 * gigabyte) == 3
    # 80% of 10 GB holds one 6 GB training (a dense one at num_words=10,000), not three.
    assert jobs_that_fit(3, training_bytes=6 * gigabyte, available_bytes=10 * gigabyte) == 1
    assert jobs_that_fit(3, training_bytes=3 * gigabyte, available_bytes=8 * gigabyte) == 2
    # Too little for even one: one anyway, as a sequential dvc repro would run it.
    assert jobs_that_fit(3, training_bytes=6 * gigabyte, available_bytes=2 * gigabyte) == 1
    assert jobs_that_fit(3, training_bytes=6 * gigabyte, available_bytes=None) == 3


def test_available_memory_is_memavailable_in_bytes(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   18000000 kB\n")
    assert available_memory(meminfo) == 18_000_000 * 1024
    assert available_memory(tmp_path / "missing") is None
