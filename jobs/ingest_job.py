"""spark-submit entry point of the 'ingest' stage.

    spark-submit --py-files dist/cdp.zip jobs/ingest_job.py --env cluster [--conf FILE] [--as-of DATE]

Equivalent to `cdp run ingest`; under spark-submit the session comes from spark-submit.
"""

import sys

from cdp.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("ingest", sys.argv[1:]))
