"""``python -m enrolment_reconciliation <mode> [options]``: the command line (``cli``)."""

import sys

from enrolment_reconciliation.cli import main

sys.exit(main())
