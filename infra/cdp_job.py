"""The one spark-submit entry point of every stage (copied into dist/ by infra/package.py).

    spark-submit --py-files cdp-<version>.zip cdp_job.py STAGE [--env ENV] [--conf FILE]
                 [--as-of DATE] [--set KEY=VALUE] ...

The same as `jobs/<stage>_job.py` and `cdp run STAGE`, for any stage of `cdp.pipeline.STAGES`,
so a new stage needs no new file to be submitted.
"""

import sys

from cdp.cli import job_main

if __name__ == "__main__":
    from cdp.pipeline import STAGE_BY_NAME

    if len(sys.argv) < 2 or sys.argv[1] not in STAGE_BY_NAME:
        names = ", ".join(STAGE_BY_NAME)
        print(f"usage: cdp_job.py STAGE [job flags]; stages: {names}", file=sys.stderr)
        sys.exit(2)
    sys.exit(job_main(sys.argv[1], sys.argv[2:]))
