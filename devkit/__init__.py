"""The development kit: what the demo, the tests and the benchmarks need beside the job.

Not part of the installed package (``pip install .`` ships ``enrolment_reconciliation`` alone):
sample course hierarchies and learners (``sample``), their loader into the real stores, the CQL
schema of Sunbird's tables for a test keyspace (``schema``), the local stack's settings and a
stream process supervisor (``stack``), and the one module that knows the checkout (``paths``).
It may import the job; the job never imports it.
"""
