"""Entry point for spark-submit: ``./spark-submit.sh <stream|sync|backfill|explain> [options]``
(the command line, ``enrolment_reconciliation.cli``)."""

import sys

from enrolment_reconciliation.cli import main

if __name__ == "__main__":
    sys.exit(main())
