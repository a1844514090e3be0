"""The benchmark instruments: each runs against the local stack (``./dev.sh bench`` or
``python -m benchmarks.<instrument>``), as the tests do."""

from devkit.stack import export_stack_environment

# Sessions built here run outside spark-submit.sh: they find the jars and the stack's
# credentials in the environment, as tests/conftest.py puts them there for the suite.
export_stack_environment()
