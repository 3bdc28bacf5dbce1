"""The one spark-submit application of every stage (copied into dist/ by infra/package.py).

    spark-submit --py-files cdp-<version>.zip cdp_job.py STAGE [--env ENV] [--conf FILE]
                 [--as-of DATE] [--set KEY=VALUE] ...

It hands its arguments to ``cdp.entry.submit_main``, which checks the stage name and calls
``cdp.entry.job_main``, the entry point every surface shares (``jobs/<stage>_job.py``,
``cdp run``, the ``cdp-<stage>`` console scripts), so a new stage needs no new file here.
"""

import sys

from cdp.entry import submit_main

if __name__ == "__main__":
    sys.exit(submit_main(sys.argv[1:]))
