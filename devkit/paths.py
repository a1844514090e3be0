"""Where the checkout's parts are: the one module that knows the project root.

The job itself (``lib/enrolment_reconciliation``) never looks for the checkout; the development
kit (sample data, the local stack, the tests' and benchmarks' helpers) does, through here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STACK_DIR = Path(os.environ.get("STACK_DIR", PROJECT_ROOT / ".stack"))  # stack/stack.sh's
STACK_ENV = STACK_DIR / "stack.env"
SPARK_SUBMIT = PROJECT_ROOT / "spark-submit.sh"
CONFIG = PROJECT_ROOT / "conf" / "enrolment-reconciliation.conf"
CQL_SCHEMA = PROJECT_ROOT / "conf" / "cql" / "sunbird_courses.cql"
JARS_DIR = STACK_DIR / "lib" / "spark"  # stack/fetch-jars.sh resolves the Spark jars here
DOCS = PROJECT_ROOT / "docs"
BENCHMARK_FIGURES = DOCS / "benchmarks"
