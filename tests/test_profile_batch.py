"""The profile of ``./dev.sh profile`` reads py4j round trips and DataFrame calls from cProfile."""

from __future__ import annotations

import cProfile

from benchmarks.profile_batch import driver_profile


def test_the_driver_profile_counts_py4j_round_trips_and_names_dataframe_calls(spark):
    profiler = cProfile.Profile()
    profiler.enable()
    rows = spark.range(3).collect()
    profiler.disable()
    profile = driver_profile(profiler)
    assert [r.id for r in rows] == [0, 1, 2]
    assert profile["py4jCalls"] > 0
    assert profile["py4jSeconds"] > 0
    collect = [f for f in profile["functions"] if f["function"].endswith("(collect)")]
    assert collect and collect[0]["calls"] == 1
