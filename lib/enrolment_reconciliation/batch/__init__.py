"""The batch: what every mode does with one batch of enrolments, read -> reconcile -> count ->
apply.

``read`` (the two readers: keyed for the stream and ``sync``, scan for the backfill),
``pipeline`` (``reconcile_batch``: structures, the core, the counts), ``tally`` (every count in
one Spark job), ``materialise`` (frames computed once), ``apply`` (outbox, writes, publish),
``milestones`` (named moments of applying a batch, for observers), ``clock`` (phase timing).

May import: ``core``, ``io``, ``runtime`` and ``batch``; never ``modes``.
"""
