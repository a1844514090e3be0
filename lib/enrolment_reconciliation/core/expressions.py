"""Column expressions built once per SparkContext.

A Column is a JVM object: building a large expression (the request classification, the event
structs, the progress arrays) takes hundreds of round trips from Python to the JVM, which a
micro-batch would pay again every few seconds (each costs a round trip to the JVM, and each
Column later costs one more to be garbage-collected in the JVM). Expressions that do not depend
on the batch are built once and reused: they name columns, never a particular DataFrame's, so
any plan can resolve them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from pyspark.sql import Column
from pyspark.sql import functions as F

from enrolment_reconciliation.runtime.jvm import context_key

T = TypeVar("T")


def empty_ids() -> Column:
    """An empty ``array<string>`` (a missing list of ids)."""
    return F.array().cast("array<string>")


def built_once(builder: Callable[..., T]) -> Callable[..., T]:
    """Cache ``builder(*args)`` per active SparkContext and arguments (hashable plain values);
    the cache is dropped when the context changes."""
    cache: dict[tuple, T] = {}

    @functools.wraps(builder)
    def get(*args: object) -> T:
        context = context_key()
        if cache and next(iter(cache))[0] != context:
            cache.clear()
        key = (context, args)
        if key not in cache:
            cache[key] = builder(*args)
        return cache[key]

    return get
