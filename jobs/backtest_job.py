"""spark-submit entry point of the 'backtest' stage.

    spark-submit --py-files dist/cdp.zip jobs/backtest_job.py --env cluster [--conf FILE] [--as-of DATE]

Equivalent to `cdp run backtest`; under spark-submit the session comes from spark-submit.
"""

import sys

from cdp.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("backtest", sys.argv[1:]))
