"""Column expressions built once per SparkContext.

A Column is a JVM object: building a large expression (the request classification, the event
structs) takes hundreds of round trips from Python to the JVM, which a micro-batch would pay
again every few seconds. Expressions that do not depend on the batch are built once and reused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from pyspark import SparkContext

T = TypeVar("T")


def built_once(builder: Callable[[], T]) -> Callable[[], T]:
    """Cache ``builder()`` for the active SparkContext (rebuilt if the context changes)."""
    cache: dict[int, T] = {}

    @functools.wraps(builder)
    def get() -> T:
        sc = SparkContext._active_spark_context
        key = id(sc._jsc) if sc is not None else 0
        if key not in cache:
            cache.clear()
            cache[key] = builder()
        return cache[key]

    return get
