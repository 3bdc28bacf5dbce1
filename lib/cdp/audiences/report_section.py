"""The audiences' part of the run report: members, entered and exited per audience in the
latest audiences run (from gold/audience_runs), and a chart of the audience sizes."""

from __future__ import annotations

from pyspark.sql import functions as F

from cdp import tables as T
from cdp.report_page import Section, bar_chart
from cdp.report_runs import Runs
from cdp.storage import TableStore


def add_audiences(sec: Section, store: TableStore, runs: Runs) -> None:
    """The latest audiences run's evaluations, when there is one."""
    aud = runs.get("audiences")
    if aud is None or not store.exists(T.AUDIENCE_RUNS.name):
        return
    rows = (
        store.read(T.AUDIENCE_RUNS.name)
        .where(F.col("run_id") == aud[0].run_id)
        .select("audience", "as_of", "purpose", "channel", "members", "entered", "exited")
        .orderBy("audience")
        .collect()
    )
    table = [
        (
            r["audience"],
            str(r["as_of"]),
            f"{r['purpose']}/{r['channel']}",
            r["members"],
            r["entered"],
            r["exited"],
        )
        for r in rows
    ]
    sec.table(
        ["audience", "as of", "consent", "members", "entered", "exited"],
        table,
        caption=f"Audiences run {aud[0].run_id}",
    )
    if table:
        sec.charts.append(
            bar_chart(
                "Audience sizes",
                [str(t[0]) for t in table],
                [float(t[3] or 0) for t in table],
                xlabel="members",
            )
        )
