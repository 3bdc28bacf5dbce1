"""spark-submit entry point of the 'features' stage.

    spark-submit --py-files dist/cdp.zip jobs/features_job.py --env cluster [--conf FILE] [--as-of DATE]

Equivalent to `cdp run features`; under spark-submit the session comes from spark-submit.
"""

import sys

from cdp.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("features", sys.argv[1:]))
