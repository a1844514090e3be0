"""How a backfill divides its users into slices: pure column functions, no I/O.

A slice is a share of the users, by a hash of ``userid``. ``user_enrolments`` and
``user_content_consumption`` share the partition key ``userid``, so a slice holds every row of
its users in both tables and is reconciled on its own; the hash is stable, so the same scope in
the same number of slices gives the same slices on every run (what a resumed run relies on).

Example::

    users = with_slice(enrolment_users, slices=8)      # userid, slice (0..7)
    first = users.where(F.col("slice") == 0).select("userid")
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SLICE = "slice"


def slice_of(slices: int, user: str = "userid") -> Column:
    """The slice (``0 .. slices-1``) of the row's user (``user_activity_agg`` calls it
    ``user_id``)."""
    return F.pmod(F.xxhash64(user), F.lit(slices)).cast("int")


def with_slice(users: DataFrame, slices: int) -> DataFrame:
    """``users`` (a ``userid`` column) with its ``slice``."""
    return users.select("userid", slice_of(slices).alias(SLICE))


def slices_for(estimated_bytes: float, bytes_per_slice: float) -> int:
    """How many slices keep each near ``bytes_per_slice`` (at least one)."""
    if estimated_bytes <= 0:
        return 1
    return max(1, math.ceil(estimated_bytes / bytes_per_slice))
