"""The pure core: the reconciliation as ``DataFrame -> DataFrame`` transformations, no I/O.

``requests`` (parse and classify sync requests), ``structure`` (relation-cache keys, one row per
course), ``progress`` (consumption, completedCount, completion, enrolment changes), ``changes``
(write only what changes), ``events`` (AUDIT, certificate and failed events), ``explanation``
(why a learner is not complete), ``repairs`` (certificate repair), ``slices`` (a backfill's share
of the users), ``reconcile`` (the whole batch as one composition), ``schemas`` and ``counters``
(the vocabulary every layer shares), ``expressions`` (Column expressions built once).

May import: pyspark and ``core`` itself; of the rest of the package only
``runtime.jvm.context_key`` (the identity of the SparkContext, for caches of Columns). Never
``io``, ``batch`` or ``modes``: a notebook or a test calls the core with literal frames.
"""
