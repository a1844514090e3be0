"""``write.max.per.second``: rows per second for each writer, kept by the driver.

The connector's own throttle (``spark.cassandra.output.throughputMBPerSec``) is a leaky bucket
per task, counted in serialized bytes, that lets a 1 MiB burst through before it first sleeps
(``RateLimiter(rate, bucketSize = 1 MiB)`` in its ``TableWriter``): a write of a few thousand
rows is never slowed, and each new task starts with an empty bucket, so it let well over N rows a
second through (docs/benchmarks.md, the throttle). So the driver paces instead: the
rows are split by a hash of their key into chunks of about a second's worth, each chunk is one
write, and after each the driver waits until the rows written so far are due. Over a write the
rate is then at most N by construction; inside a chunk the connector writes at its own pace.

Example::

    paced_write(updates, ["userid", "courseid", "batchid"], rows=3000, per_second=1000,
                write=lambda chunk: save(chunk))        # 3 writes of ~1000 rows, >= 3 s
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

MAX_CHUNKS = 600  # a longer write has chunks of more than a second's rows (jobs stay few)


def chunk_count(rows: int, per_second: int, *, max_chunks: int = MAX_CHUNKS) -> int:
    """Chunks of about one second's rows (at least 1, at most ``max_chunks``)."""
    if rows <= 0 or per_second <= 0:
        return 1
    return max(1, min(max_chunks, math.ceil(rows / per_second)))


def paced_write(
    frame: DataFrame,
    key: Sequence[str],
    *,
    rows: int,
    per_second: int,
    write: Callable[[DataFrame], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write ``frame`` (``rows`` of them) through ``write`` at most ``per_second`` rows a
    second (0: at once); returns the number of writes. ``key`` spreads rows over chunks."""
    chunks = chunk_count(rows, per_second)
    if per_second <= 0 or (chunks == 1 and rows <= 0):
        write(frame)
        return 1
    started = clock()
    chunk = F.pmod(F.xxhash64(*key), F.lit(chunks))
    for index in range(chunks):
        write(frame.where(chunk == index))
        due = started + (index + 1) * rows / chunks / per_second
        wait = due - clock()
        if wait > 0:
            sleep(wait)
    return chunks
