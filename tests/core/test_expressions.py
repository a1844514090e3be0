"""Column expressions built once per SparkContext and arguments."""

from __future__ import annotations

from pyspark.sql import functions as F

from enrolment_reconciliation.core.expressions import built_once


def test_an_expression_is_built_once_per_arguments_and_resolves_in_any_frame(spark):
    calls: list[str] = []

    @built_once
    def flagged(column: str):
        calls.append(column)
        return F.col(column) > 1

    assert flagged("a") is flagged("a")
    assert flagged("b") is not flagged("a")
    assert calls == ["a", "b"]
    frames = [
        spark.range(3).withColumnRenamed("id", "a"),
        spark.range(5).select(F.col("id").alias("a")),
    ]
    assert [f.where(flagged("a")).count() for f in frames] == [1, 3]
