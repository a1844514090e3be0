"""The ways to run the job, each over the one batch function (``batch.pipeline``).

``stream`` (Kafka Structured Streaming, ``foreachBatch``), ``backfill`` (every enrolment from
scans, in slices, under a lease; the dry run; the certificate repair), ``sync`` (one enrolment
now), ``via_stream`` (``sync --via-stream``: ask the running stream), ``explain`` (why is this
learner not complete), ``enrolment_state`` (one enrolment's rows, no Spark).

May import: every layer below (``core``, ``io``, ``batch``, ``runtime``) and other modes; the
command line (``cli``) calls them.
"""
