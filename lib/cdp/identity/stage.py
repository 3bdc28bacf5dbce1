"""The ``identity`` stage: silver records -> stable customer ids.

Reads ``silver/person_records``, ``silver/transactions``, ``silver/consents`` (records, the
nodes) and ``silver/events`` (identifier pairs only), all at their current version; the
stage does not use ``as_of`` (identity is resolved on everything known now).

Writes, in this order (so that a crash at any point leaves the previous map intact and a
rerun completes the work):

1. ``gold/identity_rejected_links``: every link merge protection rejected this run, with
   rule, id type, a keyed hash of the value (:mod:`cdp.identity.rejected`), reason and run
   id, tagged with ``base_map_version`` and written as that version's slice (one
   replace-where commit), so a rerun after a crash before the map commit replaces the
   slice instead of adding to it; a run that leaves the map unchanged (after a crash past
   the map commit, or on unchanged silver) replaces the newest slice, that of the run that
   wrote the map: each rejection is recorded once per map version;
2. ``gold/identity_history``: created / joined / merged / split / retired ids, each row
   tagged with ``base_map_version``, the map version the change was computed from. The
   rows of one base version are written with one replace-where commit, so a rerun after a
   crash before step 3 replaces what the crashed run wrote instead of adding to it: every
   change the map went through is recorded exactly once;
3. ``gold/identity_map`` (one overwrite commit, skipped when nothing changed, so a rerun on
   unchanged silver leaves it byte-identical);
4. ``gold/identity_identifiers`` (overwrite, skipped when unchanged): every accepted
   identifier value of every customer, event-only cookies and devices included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp import faults
from cdp import tables as T
from cdp.config import CdpConfig
from cdp.errors import ConfigError
from cdp.identity.checkpoint import cut
from cdp.identity.email_names import email_name_verdicts
from cdp.identity.links import event_links, identifier_links
from cdp.identity.matching import links as match_links
from cdp.identity.matching.config import MatchingRules, load_matching, resolve_fields
from cdp.identity.matching.step import MatchingResult, ModelStore, run_matching
from cdp.identity.nodes import (
    RECORD,
    order_lines,
    prepare_records,
    record_attributes,
    record_nodes,
)
from cdp.identity.rejected import REJECTED_KEY_PURPOSE, rejected_rows
from cdp.identity.resolution import resolve
from cdp.identity.rules import EVENT_TABLE, RECORD_TABLES, IdentityRules, load_rules
from cdp.identity.settings import IdentityConfig
from cdp.identity.shared import mark_shared, reject_shared_endpoints
from cdp.identity.stable import MAP_COLUMNS, assign_ids, differs
from cdp.privacy.keys import derive_key
from cdp.stage import StageContext
from cdp.storage import TableStore

MAP_TABLE = T.IDENTITY_MAP.name
IDENTIFIERS_TABLE = T.IDENTITY_IDENTIFIERS.name
HISTORY_TABLE = T.IDENTITY_HISTORY.name
REJECTED_TABLE = T.IDENTITY_REJECTED_LINKS.name
MATCH_PAIRS_TABLE = T.IDENTITY_MATCH_PAIRS.name
REVIEW_TABLE = T.IDENTITY_REVIEW_QUEUE.name
LINKS_TABLE = T.IDENTITY_LINKS.name
IDENTIFIER_COLUMNS = ["customer_id", "id_type", "id_value"]
BASE_VERSION = "base_map_version"


def rules_path(ctx: StageContext, name: str | None = None) -> Path:
    """``identity.rules_file`` (or another file setting of ``identity``); a relative path is
    taken from the conf directory."""
    settings: IdentityConfig = ctx.config.identity
    return ctx.config.conf_path(name if name is not None else settings.rules_file)


def exact_rules(config: CdpConfig) -> IdentityRules:
    """The stage's exact rules (``identity.rules_file``), with the sources' custom
    identifiers."""
    from cdp.sources import custom_identifiers, load_sources

    path = config.conf_path(config.identity.rules_file)
    return load_rules(path, custom=custom_identifiers(load_sources(config)))


def load_stage_rules(
    ctx: StageContext,
) -> tuple[IdentityRules, MatchingRules | None, list[match_links.Decision], list[str]]:
    """Every rule file of the stage, validated against the declared sources before any data
    is read: the exact rules, the matching rules (comparisons on fields no source maps fail,
    or are skipped when optional) and the steward's decisions."""
    from cdp.sources import load_sources, mapped_fields

    settings: IdentityConfig = ctx.config.identity
    sources = load_sources(ctx.config)
    rules = exact_rules(ctx.config)
    notes: list[str] = []
    matching = None
    if settings.matching_file:
        matching, notes = resolve_fields(
            load_matching(rules_path(ctx, settings.matching_file)), mapped_fields(sources)
        )
    if matching is not None:
        check_matching_tier(matching, rules)
    decisions = (
        match_links.load_decisions(rules_path(ctx, settings.decisions_file))
        if settings.decisions_file
        else []
    )
    return rules, matching, decisions, notes


def anonymous_records(records: DataFrame, accepted: DataFrame) -> DataFrame:
    """``node`` of every record outside ``person_records`` that no accepted link reaches: a
    sale or a consent without any identifier a person can be recognised by (a cash receipt,
    an export row whose customer id is empty). Such a record is nobody's: as its own customer
    it would add a one-purchase "customer" per receipt line to every count and model. A
    person record is always someone's, linked or not."""
    reached = accepted.where(F.col("other_type") == RECORD).select(F.col("other").alias("node"))
    return (
        records.where(F.col("record_table") != "person_records")
        .join(reached, "node", "left_anti")
        .select("node")
    )


def check_matching_tier(matching: MatchingRules, rules: IdentityRules) -> None:
    """Fail when scored links exempt from some guards (``guards: uncompared``) do not form the
    weakest tier: the exemption holds for every weaker tier too (see ``resolve``), so an exact
    rule at or below it would escape those guards."""
    if not matching.enabled or not matching.guard_exemptions():
        return
    weaker = sorted(
        [r.name for r in rules.enabled_identifiers if r.priority <= matching.priority]
        + [r.name for r in rules.enabled_event_links if r.priority <= matching.priority]
    )
    if weaker:
        raise ConfigError(
            f"{matching.origin or 'matching rules'}: priority {matching.priority} with guards: "
            f"uncompared must be below every exact rule's; {weaker} are not (lower it, or set "
            "guards: all)"
        )


def _slice_of_map(store: TableStore, base: int) -> int:
    """The rejected-links slice of the map as it stands: a run that leaves the map unchanged
    repeats the rejections of the run that wrote it (a rerun after a crash that came after
    the map commit, or a plain rerun on unchanged silver), so it replaces that run's slice,
    the newest one, instead of adding one under the map's new version."""
    if not store.exists(REJECTED_TABLE):
        return base
    if BASE_VERSION not in store.schema(REJECTED_TABLE).fieldNames():
        return base
    newest = store.read(REJECTED_TABLE).agg(F.max(BASE_VERSION)).first()
    return base if newest is None or newest[0] is None else int(newest[0])


def _record_rejected(
    store: TableStore, rejected: DataFrame, base: int, *, ctx: StageContext
) -> None:
    """Write this run's rejected links as the whole slice of map version ``base`` (see
    :func:`_record_history`: the same reasoning, one slice per base version)."""
    rejected = rejected.withColumn(BASE_VERSION, F.lit(base).cast("long"))
    if (
        store.exists(REJECTED_TABLE)
        and BASE_VERSION not in store.schema(REJECTED_TABLE).fieldNames()
    ):
        # A table from before the column existed: this append adds it (schema evolution).
        ctx.run.wrote(REJECTED_TABLE, store.append(REJECTED_TABLE, rejected).rows_written)
        return
    written = store.replace_where(REJECTED_TABLE, rejected, f"{BASE_VERSION} = {base}")
    ctx.run.wrote(REJECTED_TABLE, written.rows_written)


def _record_history(
    store: TableStore, history: DataFrame, base: int, *, has_events: bool, ctx: StageContext
) -> None:
    """Write this run's history rows as the whole slice of map version ``base``.

    Only a run whose map commit lands moves the map past ``base``, so rows already tagged
    ``base`` were left by a run that crashed before its map commit: they are replaced (or
    deleted, when this run finds no change), never added to.
    """
    exists = store.exists(HISTORY_TABLE)
    if exists and BASE_VERSION not in store.schema(HISTORY_TABLE).fieldNames():
        # A table from before the column existed: this append adds it (schema evolution).
        if has_events:
            ctx.run.wrote(HISTORY_TABLE, store.append(HISTORY_TABLE, history).rows_written)
        return
    slice_ = f"{BASE_VERSION} = {base}"
    if has_events:
        written = store.replace_where(HISTORY_TABLE, history, slice_).rows_written
        ctx.run.wrote(HISTORY_TABLE, written)
    elif exists and store.read(HISTORY_TABLE).where(slice_).limit(1).count():
        store.delete(HISTORY_TABLE, slice_)
        ctx.progress(f"{HISTORY_TABLE}: removed the rows of a crashed run from map version {base}")


def build_links(
    frames: dict[str, DataFrame], events: DataFrame | None, rules: IdentityRules
) -> DataFrame:
    """Every identifier and event link with merge protection's verdict in ``reason``.

    The identifier links and their verdicts are materialised (:func:`cut`): each is read
    twice below (the shared-value counts and the links they judge, then the event links'
    endpoints), and a lazy plan would compute every rule's pass four times over and plan a
    tree that large (on the 300-person demo: 42 jobs and 16 s for the one query)."""
    id_links = cut(identifier_links(frames, rules))
    links = mark_shared(
        id_links,
        rules,
        also_shared=email_name_verdicts(frames, rules),
        order_lines=order_lines(frames),
    )
    elinks = event_links(events, rules) if events is not None else None
    if elinks is not None:
        links = cut(links)
        links = links.unionByName(reject_shared_endpoints(elinks, links))
    return links


def run_identity(ctx: StageContext) -> None:
    """The ``identity`` stage (see the module docstring)."""
    store, run_id = ctx.store, ctx.run.run_id
    settings: IdentityConfig = ctx.config.identity
    # A bad rule fails here, before any data is read.
    rules, matching, decisions, notes = load_stage_rules(ctx)
    for note in notes:
        ctx.progress(f"matching: {note}")
    at = ctx.run.started_at
    frames = {
        name: store.read(t.table) for name, t in RECORD_TABLES.items() if store.exists(t.table)
    }
    if not frames:
        ctx.progress("no silver record tables yet: nothing to resolve")
        return
    events = store.read(EVENT_TABLE.table) if store.exists(EVENT_TABLE.table) else None
    silver_frames = frames
    frames = prepare_records(frames, rules)

    records = cut(record_nodes(frames))
    for r in records.groupBy("record_table").count().collect():
        ctx.run.read(T.silver_table(r["record_table"]), int(r["count"]))
    matched = _match(ctx, silver_frames, records, rules, matching, decisions, notes)
    if matched.noisy_fields:
        # The model finds these fields disagreeing in too many of one person's record pairs
        # to overrule it (its person checks stood down): for the same reason, two of their
        # values behind one e-mail, or within one customer, are no proof of two people.
        rules, relaxed = rules.without_conflicts_on(matched.noisy_fields)
        for note in relaxed:
            ctx.progress(f"merge protection: {note} (too noisy a field, by the matching model)")
        ctx.run.metric("merge_protection.relaxed_fields", ",".join(matched.noisy_fields))
    links = build_links(frames, events, rules)
    if matched.links is not None:
        links = links.unionByName(matched.links)
    links = cut(links)
    verdicts = {
        (r["reason"] or "accepted"): int(r["count"])
        for r in links.groupBy("reason").count().collect()
    }
    ctx.progress(f"links: {verdicts}")
    for reason, n in verdicts.items():
        ctx.run.metric(f"links.{reason}", n)

    accepted = links.where(F.col("reason").isNull())
    anonymous = cut(anonymous_records(records, accepted))
    n_anonymous = anonymous.count()
    ctx.run.metric("anonymous_records", n_anonymous)
    if n_anonymous:
        ctx.progress(
            f"{n_anonymous:,} transaction or consent record(s) carry no identifier anyone can "
            "be recognised by (a cash receipt, a row without a customer id): no customer"
        )
        records = cut(records.join(anonymous, "node", "left_anti"))
    fields = rules.attribute_fields()
    attributes = record_attributes(frames, fields) if fields else None
    if matched.cannot_tokens is not None:
        tokens = matched.cannot_tokens
        attributes = tokens if attributes is None else attributes.join(tokens, "node", "full_outer")
    attributes = cut(attributes) if attributes is not None else None
    res = resolve(
        records,
        accepted,
        rules,
        attributes=attributes,
        engine=settings.engine,
        max_rounds=settings.max_rounds,
        checkpoint_interval=settings.checkpoint_interval,
        local_edges=settings.local_component_edges,
        cannot_link=matched.cannot_tokens is not None,
        exempt=(
            {matching.priority: matching.guard_exemptions()}
            if matching is not None and matched.links is not None
            else None
        ),
    )
    ctx.run.metric("tiers", ",".join(str(t) for t in res.tiers))
    ctx.run.metric("cc_runs", res.cc_runs)
    ctx.run.metric("oversized_components", res.oversized)
    ctx.run.metric("limit_components", res.limit_hits)
    ctx.run.metric("conflict_components", res.conflict_hits)
    if res.oversized:
        ctx.log.warning(
            "%d component(s) exceeded max_component_records=%d and were split on their "
            "weakest links (see %s, reason 'oversized')",
            res.oversized,
            rules.max_component_records,
            REJECTED_TABLE,
        )

    pair_types = [match_links.STEWARD_TYPE] + ([matching.rule] if matching else [])
    n_ids = (
        links.where((F.col("other_type") == RECORD) & ~F.col("unit_type").isin(*pair_types))
        .groupBy(F.col("other").alias("node"))
        .agg(F.countDistinct("unit").alias("n_identifiers"))
    )
    members = (
        records.join(res.labels.where(F.col("id_type") == RECORD).select("node", "comp"), "node")
        .join(n_ids, "node", "left")
        .withColumn("n_identifiers", F.coalesce("n_identifiers", F.lit(0)))
    )
    # Materialised: the history's plan reads members in several branches, and Spark's size
    # estimate over the un-cut lineage took minutes of driver time once scored pairs joined.
    members = cut(members)
    base_version = store.version(MAP_TABLE)
    previous = store.read(MAP_TABLE, version=base_version) if base_version is not None else None
    new_map, history = assign_ids(members, previous, run_id=run_id, at=at, cut=cut)
    new_map = cut(new_map)
    base = -1 if base_version is None else base_version
    history = cut(history.withColumn(BASE_VERSION, F.lit(base).cast("long")))

    # Identifier values of each customer: accepted value nodes in components with records.
    values = (
        accepted.select(
            F.col("unit").alias("node"),
            F.col("unit_type").alias("id_type"),
            F.col("unit_value").alias("id_value"),
        )
        .unionByName(
            accepted.where(F.col("other_type") != RECORD).select(
                F.col("other").alias("node"),
                F.col("other_type").alias("id_type"),
                F.col("other_value").alias("id_value"),
            )
        )
        .distinct()
    )
    comp_customer = (
        members.select("comp", "node")
        .join(
            new_map.select(
                F.xxhash64(F.lit("r"), "record_table", "source", "source_record_id").alias("node"),
                "customer_id",
            ),
            "node",
        )
        .select("comp", "customer_id")
        .distinct()
    )
    identifiers = (
        res.labels.where((F.col("id_type") != RECORD) & ~F.col("id_type").isin(*pair_types))
        .select("node", "comp")
        .join(comp_customer, "comp")
        .join(values, "node")
        .select(*IDENTIFIER_COLUMNS)
        .distinct()
    )

    rejected = rejected_rows(
        res.rejected.unionByName(
            links.where(F.col("reason").isNotNull())
            .groupBy("rule", "id_type", "unit_value", "reason")
            .agg(F.count(F.lit(1)).alias("links"))
        ),
        run_id=run_id,
        at=at,
        key=derive_key(ctx.config.privacy_key(), REJECTED_KEY_PURPOSE),
    )
    map_changed = differs(new_map, previous, MAP_COLUMNS)
    _record_rejected(store, rejected, base if map_changed else _slice_of_map(store, base), ctx=ctx)
    _write_matching(ctx, matched, res.rejected, accepted, records, matching)

    events_count = {r["event"]: int(r["count"]) for r in history.groupBy("event").count().collect()}
    for event, n in events_count.items():
        ctx.run.metric(f"history.{event}", n)
    _record_history(store, history, base, has_events=bool(events_count), ctx=ctx)
    faults.checkpoint("identity.before_map")

    if map_changed:
        ctx.run.wrote(MAP_TABLE, store.overwrite(MAP_TABLE, new_map).rows_written)
    else:
        ctx.progress(f"{MAP_TABLE} unchanged: not rewritten")
    old_ids = store.read(IDENTIFIERS_TABLE) if store.exists(IDENTIFIERS_TABLE) else None
    identifiers = cut(identifiers)
    if differs(identifiers, old_ids, IDENTIFIER_COLUMNS):
        written = store.overwrite(IDENTIFIERS_TABLE, identifiers).rows_written
        ctx.run.wrote(IDENTIFIERS_TABLE, written)
    summary = new_map.agg(
        F.countDistinct("customer_id").alias("customers"), F.count(F.lit(1)).alias("records")
    ).first()
    assert summary is not None
    ctx.run.metric("customers", summary["customers"])
    ctx.run.metric("records", summary["records"])
    ctx.progress(
        f"{summary['records']} records -> {summary['customers']} customers; "
        f"history {events_count or 'unchanged'}; oversized {res.oversized}"
    )
    _drop_scratch(ctx)


def _drop_scratch(ctx: StageContext) -> None:
    """Remove this run's matching scratch copies (see :func:`_scratch_cut`), once every table
    that read them is written; a remote checkpoint directory is left to its own lifecycle."""
    import shutil

    root = ctx.config.checkpoint_dir
    if "://" in root and not root.startswith("file://"):
        return
    local = Path(root.replace("file://", "")) / "identity_matching" / ctx.run.run_id
    shutil.rmtree(local, ignore_errors=True)


def _scratch_cut(ctx: StageContext) -> Callable[[DataFrame], DataFrame]:
    """Materialise as Parquet under ``<checkpoint dir>/identity_matching/<run id>`` and read
    back: no lineage, sizes from the files (a Spark checkpoint would keep the origin plan)."""
    root = f"{ctx.config.checkpoint_dir.rstrip('/')}/identity_matching/{ctx.run.run_id}"
    counter = iter(range(1_000_000))

    def cut(df: DataFrame) -> DataFrame:
        path = f"{root}/{next(counter)}"
        df.write.mode("overwrite").parquet(path)
        return df.sparkSession.read.parquet(path)

    return cut


def _match(
    ctx: StageContext,
    frames: dict[str, DataFrame],
    records: DataFrame,
    rules: IdentityRules,
    matching: MatchingRules | None,
    decisions: list[match_links.Decision],
    notes: list[str],
) -> MatchingResult:
    """The probabilistic step and the steward's decisions (see :mod:`cdp.identity.matching`)."""
    from cdp.models.inputs import registry_for

    settings: IdentityConfig = ctx.config.identity
    if matching is None and not decisions:
        return MatchingResult(None, None, None, None)
    if matching is None:
        # Decisions without probabilistic matching (identity.matching_file: null).
        matching = MatchingRules.model_construct(
            enabled=False, comparisons=[], blocking=[], tables=[], nicknames={}
        )
    nicknames = dict(matching.nicknames)
    versions = ",".join(
        f"{t.table}@{ctx.store.version(t.table)}"
        for name, t in sorted(RECORD_TABLES.items())
        if name in frames and name in matching.tables
    )
    result = run_matching(
        ctx.spark,
        frames,
        records,
        matching,
        nicknames=nicknames,
        decisions=decisions,
        models=ModelStore(registry_for(ctx)),
        retrain=settings.retrain,
        run_id=ctx.run.run_id,
        data_versions=versions,
        now=ctx.run.started_at,
        cut=_scratch_cut(ctx),
        progress=ctx.progress,
    )
    said = notes + result.notes
    if said:
        ctx.run.metric("matching.notes", "; ".join(said))
    for note in result.notes:
        ctx.progress(f"matching: {note}")
    for key, value in result.metrics.items():
        ctx.run.metric(key, value)
    return result


def _record_columns(key: str, suffix: str) -> list[Column]:
    """``record_table, source, source_record_id`` (with ``suffix``) of a member key."""
    parts = F.split(F.col(key), r"\|", 3)
    names = ("record_table", "source", "source_record_id")
    return [parts.getItem(i).alias(n + suffix) for i, n in enumerate(names)]


def _write_matching(
    ctx: StageContext,
    matched: MatchingResult,
    rejected: DataFrame,
    accepted: DataFrame,
    records: DataFrame,
    matching: MatchingRules | None,
) -> None:
    """``gold/identity_match_pairs`` (every accepted scored pair, why, and whether merge
    protection kept it), ``gold/identity_review_queue`` (the grey zone) and
    ``gold/identity_links`` (every accepted record link: which rule joined which record),
    each overwritten: they describe the current resolution."""
    store, run_id, at = ctx.store, ctx.run.run_id, ctx.run.started_at
    if matched.pairs is not None and matching is not None:
        dropped = (
            rejected.where(F.col("rule") == matching.rule)
            .groupBy(F.col("unit_value").alias("_value"))
            .agg(F.min("reason").alias("_reason"))
        )
        pairs = (
            matched.pairs.withColumn("_value", F.concat_ws("~", "key_l", "key_r"))
            .join(dropped, "_value", "left")
            .select(
                *_record_columns("key_l", "_l"),
                *_record_columns("key_r", "_r"),
                "match_probability",
                "match_weight",
                "levels",
                "weights",
                F.coalesce("_reason", F.lit("linked")).alias("status"),
                F.lit(run_id).alias("run_id"),
                F.lit(at).cast("timestamp").alias("at"),
            )
        )
        ctx.run.wrote(MATCH_PAIRS_TABLE, store.overwrite(MATCH_PAIRS_TABLE, pairs).rows_written)
    if matched.review is not None:
        review = matched.review.select(
            F.col("key_l").alias("record_l"),
            F.col("key_r").alias("record_r"),
            "match_probability",
            "match_weight",
            "levels",
            "weights",
            "run_id",
        )
        ctx.run.wrote(REVIEW_TABLE, store.overwrite(REVIEW_TABLE, review).rows_written)
    record_links = (
        accepted.where(F.col("other_type") == RECORD)
        .select(
            "rule",
            "id_type",
            "priority",
            F.col("unit").alias("unit"),
            F.col("other").alias("node"),
        )
        .join(records.select("node", "record_table", "source", "source_record_id"), "node")
        .drop("node")
    )
    ctx.run.wrote(LINKS_TABLE, store.overwrite(LINKS_TABLE, record_links).rows_written)
