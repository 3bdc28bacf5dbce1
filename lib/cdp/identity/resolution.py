"""The tiered resolver: connected components of the accepted links, with the per-customer
limits of :mod:`cdp.identity.limits` enforced.

:func:`resolve` finds the components of all accepted links in one run, then rebuilds only
the components that break a rule tier by tier, strongest priority first, dropping the links
of the current (weakest so far) tier that would give a customer more identifiers of a type
than ``limits`` allows (``limit:<type>``), records with more distinct values of a field than
``attribute_limits`` allows (``conflict:<field>``: two birth dates are two people, however
they got linked) or more records than ``max_component_records`` (``oversized``).

Everything is lazy Spark work except the connected-components rounds and the per-tier
materialisation, which cut the lineage so plans stay small however many tiers there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.identity.checkpoint import cut
from cdp.identity.components import DEFAULT_LOCAL_EDGES, connected_components
from cdp.identity.limits import UNCOUNTED, UNCOUNTED_TABLE, Caps
from cdp.identity.links import LINK_COLUMNS
from cdp.identity.nodes import RECORD
from cdp.identity.rules import IdentityRules

log = logging.getLogger(__name__)


def _uncounted(records: DataFrame) -> DataFrame:
    """``node, _uncounted`` of ``records`` (every record node; see :data:`UNCOUNTED`): from the
    column itself when present, else from ``record_table``; false when neither is there."""
    if UNCOUNTED in records.columns:
        flag = F.col(UNCOUNTED)
    elif "record_table" in records.columns:
        flag = F.col("record_table") == UNCOUNTED_TABLE
    else:
        flag = F.lit(False)
    return records.select("node", F.coalesce(flag, F.lit(False)).alias(UNCOUNTED))


@dataclass
class Resolution:
    """What :func:`resolve` found."""

    # node, comp, id_type (RECORD for records), _uncounted (a record the size cap does not
    # count, see cdp.identity.limits): every record and every accepted value.
    labels: DataFrame
    # rule, id_type, unit_value, reason, links: units dropped by limits, attribute
    # conflicts or the size cap.
    rejected: DataFrame
    tiers: list[int] = field(default_factory=list)
    oversized: int = 0  # components that hit max_component_records (then split)
    limit_hits: int = 0  # components that hit a per-customer limit (then split)
    conflict_hits: int = 0  # components that joined conflicting attributes (then split)
    cc_runs: int = 0


def _repair_step(
    step: str,
    edges: DataFrame,
    cmap: DataFrame,
    bad: DataFrame,
    contrib: DataFrame,
    caps: Caps,
    exempt: frozenset[str] = frozenset(),
) -> DataFrame:
    """Units ``(rule, unit, _why)`` of the current tier to drop in one repair step.

    ``own``: units that break a rule on their own (their value plus the components they
    touch). ``bridges``: in components still breaking a rule, units touching two or more
    prior components or adding a limited identifier. ``all``: every unit of the tier in a
    component still breaking a rule (only reached when several new values chain prior
    components together).
    """
    key = ["rule", "unit"]
    if step == "own":
        nodes = (
            edges.select(*key, F.col("uc").alias("node"))
            .unionByName(edges.select(*key, F.col("oc").alias("node")))
            .distinct()
        )
        return (
            nodes.join(contrib, "node")
            .groupBy(*key)
            .agg(*caps.combine())
            .withColumn("_why", caps.violation(exempt))
            .where(F.col("_why").isNotNull())
            .select(*key, "_why")
        )
    in_bad = edges.join(cmap.select(F.col("node").alias("uc"), "component"), "uc").join(
        bad.select("component", "_why"), "component"
    )
    if step == "all":
        return in_bad.select(*key, "_why").distinct()
    types = caps.types
    limited_u = F.col("unit_type").isin(*types) if types else F.lit(False)
    limited_o = F.col("other_type").isin(*types) if types else F.lit(False)
    prior = F.array_compact(
        F.array(F.when(~F.col("unit_new"), F.col("uc")), F.when(~F.col("other_new"), F.col("oc")))
    )
    per_unit = in_bad.groupBy(*key, "_why").agg(
        F.size(F.array_distinct(F.flatten(F.collect_list(prior)))).alias("_priors"),
        F.max((F.col("unit_new") & limited_u) | (F.col("other_new") & limited_o)).alias("_adds"),
    )
    return per_unit.where((F.col("_priors") > 1) | F.col("_adds")).select(*key, "_why")


def resolve(
    records: DataFrame,
    links: DataFrame,
    rules: IdentityRules,
    *,
    attributes: DataFrame | None = None,
    engine: str = "auto",
    max_rounds: int = 100,
    checkpoint_interval: int = 2,
    local_edges: int = DEFAULT_LOCAL_EDGES,
    cannot_link: bool = False,
    exempt: Mapping[int, frozenset[str]] | None = None,
) -> Resolution:
    """Connected components of the accepted links, with per-customer limits enforced.

    ``records``: ``node`` of every record. ``links``: accepted links (``reason`` null) in the
    :data:`~cdp.identity.links.LINK_COLUMNS` layout. ``attributes``: the records' values of the fields that
    ``attribute_limits`` and ``name_conflicts`` name (:func:`~cdp.identity.nodes.record_attributes` of
    ``rules.attribute_fields()``); required when there are any.

    One connected-components run over every link finds the candidate customers. Limits are
    monotone (a part of a component holds no more records, identifiers or distinct attribute
    values than the whole), so
    a component that breaks no rule is final as it is: building it tier by tier would drop
    nothing. Only the components that break a per-customer limit or the size cap (a few in a
    thousand) are rebuilt tier by tier, strongest priority first, on their own subgraph (see
    :func:`_resolve_tiered`). The result is the same as building the whole graph tier by tier,
    for a fraction of the component runs over the full graph.

    ``exempt``: priority -> the attribute fields and identifier types whose caps do not hold
    the links of that tier nor of any weaker one (a probabilistic tier has weighed the names,
    dates and identifiers it compares: see ``guards`` in the matching rules). Weaker tiers
    keep the exemption because the components they extend may already hold what it let in;
    the stage gives it only to the weakest tier.
    """
    caps = Caps.of(rules, cannot_link=cannot_link)
    if caps.attributes and attributes is None:
        raise ValueError(
            f"attribute_limits / name_conflicts on {caps.attributes} need the records' "
            "attributes (see record_attributes)"
        )
    links = cut(links.select(*[c for c in LINK_COLUMNS if c != "reason"]))
    result = Resolution(labels=records.limit(0), rejected=records.limit(0))
    result.tiers = sorted(
        (r[0] for r in links.select("priority").distinct().collect()), reverse=True
    )

    def cc(edges: DataFrame) -> DataFrame:
        result.cc_runs += 1
        return connected_components(
            edges.select("uc", "oc"),
            src="uc",
            dst="oc",
            engine=engine,
            max_rounds=max_rounds,
            checkpoint_interval=checkpoint_interval,
            local_edges=local_edges,
        )

    cmap = cut(cc(links.select(F.col("unit").alias("uc"), F.col("other").alias("oc"))))
    value_nodes = (
        links.select(F.col("unit").alias("node"), F.col("unit_type").alias("id_type"))
        .unionByName(
            links.select(F.col("other").alias("node"), F.col("other_type").alias("id_type"))
        )
        .where(F.col("id_type") != RECORD)
        .distinct()
    )
    record_nodes_ = (
        _uncounted(records).select("node", F.lit(RECORD).alias("id_type"), UNCOUNTED).distinct()
    )
    nodes = record_nodes_.unionByName(value_nodes.withColumn(UNCOUNTED, F.lit(False)))
    labelled = nodes.join(cmap, "node", "left").select(
        "node", F.coalesce("component", "node").alias("comp"), "id_type", UNCOUNTED
    )
    attrs = None
    if attributes is not None and caps.attributes:
        attrs = attributes.select("node", *[f"_v_{a}" for a in caps.attributes])
    with_attrs = labelled.join(attrs, "node", "left") if attrs is not None else labelled
    stats = with_attrs.groupBy("comp").agg(*caps.count())
    bad = cut(
        stats.withColumn("_why", caps.violation()).where(F.col("_why").isNotNull()).select("comp")
    )
    if not bad.limit(1).count():
        result.labels = cut(labelled)
        result.rejected = _no_rejections(records)
        return result

    # Rebuild only the components that break a rule, tier by tier.
    bad_nodes = cut(labelled.join(bad, "comp", "left_semi").select("node"))
    sub_records = _uncounted(records).join(bad_nodes, "node", "left_semi")
    sub_links = links.join(bad_nodes.select(F.col("node").alias("unit")), "unit", "left_semi")
    sub_attrs = attrs.join(bad_nodes, "node", "left_semi") if attrs is not None else None
    labels, rejected = _resolve_tiered(
        sub_records, sub_links, sub_attrs, caps, cc, cut, result, dict(exempt or {})
    )
    good = labelled.join(bad, "comp", "left_anti")
    result.labels = cut(good.unionByName(labels))
    result.rejected = (
        reduce(DataFrame.unionByName, rejected) if rejected else _no_rejections(records)
    )
    return result


def _no_rejections(like: DataFrame) -> DataFrame:
    return like.sparkSession.createDataFrame(
        [], "rule string, id_type string, unit_value string, reason string, links long"
    )


def _new_nodes(edges: DataFrame, type_column: str) -> DataFrame:
    """``node, <type_column>``: the nodes a tier's edges bring that no prior component holds
    (value nodes seen for the first time), each once."""
    return (
        edges.where("unit_new")
        .select(F.col("unit").alias("node"), F.col("unit_type").alias(type_column))
        .unionByName(
            edges.where("other_new").select(
                F.col("other").alias("node"), F.col("other_type").alias(type_column)
            )
        )
        .distinct()
    )


def _resolve_tiered(
    records: DataFrame,
    links: DataFrame,
    attributes: DataFrame | None,
    caps: Caps,
    cc: Callable[[DataFrame], DataFrame],
    cut: Callable[[DataFrame], DataFrame],
    result: Resolution,
    exempt_at: Mapping[int, frozenset[str]] | None = None,
) -> tuple[DataFrame, list[DataFrame]]:
    """Components built tier by tier (strongest first), repairing each tier that breaks a rule.

    At each priority tier the tier's links are added to the components found so far; a
    resulting component that breaks a per-customer limit or the size cap is repaired by
    dropping links of this tier -- the weakest present -- in up to three deterministic steps
    (see :func:`_repair_step`): each link unit that breaks a rule on its own; then, where the
    rest still does, every unit that bridges components or adds a limited identifier there;
    then any unit left in a component still breaking a rule. Earlier tiers never break a
    rule, so the result never does. A unit is ``(rule, unit)``: an identifier value and the
    records (or event-linked values) it links. Returns the labels and the rejected units;
    counts go to ``result``.
    """
    types = caps.types
    labels = cut(
        _uncounted(records)
        .select(
            F.col("node"), F.col("node").alias("comp"), F.lit(RECORD).alias("id_type"), UNCOUNTED
        )
        .distinct()
    )
    rejected: list[DataFrame] = []
    links = cut(links)
    tiers = sorted((r[0] for r in links.select("priority").distinct().collect()), reverse=True)
    exempt: frozenset[str] = frozenset()
    for tier in tiers:
        exempt = exempt | (exempt_at or {}).get(tier, frozenset())
        lab = labels.select("node", "comp")
        tier_links = links.where(F.col("priority") == tier)
        ul = lab.select(F.col("node").alias("unit"), F.col("comp").alias("_uc"))
        ol = lab.select(F.col("node").alias("other"), F.col("comp").alias("_oc"))
        edges = cut(
            tier_links.join(ul, "unit", "left")
            .join(ol, "other", "left")
            .select(
                "*",
                F.coalesce("_uc", "unit").alias("uc"),
                F.coalesce("_oc", "other").alias("oc"),
                F.col("_uc").isNull().alias("unit_new"),
                F.col("_oc").isNull().alias("other_new"),
            )
            .drop("_uc", "_oc")
        )
        # Per node of the component graph: what it brings (prior component: its records and
        # limited identifiers; new value: one identifier of its type).
        new_stats = _new_nodes(edges, "t").select(
            "node",
            F.lit(0).cast("long").alias("_records"),
            *[(F.col("t") == t).cast("long").alias(f"_t_{t}") for t in types],
            *caps.none(),
        )
        touched = (
            edges.select(F.col("uc").alias("comp"))
            .unionByName(edges.select(F.col("oc").alias("comp")))
            .distinct()
        )
        prior = labels.join(touched, "comp", "left_semi")
        if attributes is not None:
            prior = prior.join(attributes, "node", "left")
        prior_stats = prior.groupBy(F.col("comp").alias("node")).agg(*caps.count())
        contrib = cut(prior_stats.unionByName(new_stats))

        def merged(
            cmap: DataFrame, contrib: DataFrame = contrib, exempt: frozenset[str] = exempt
        ) -> DataFrame:
            """component -> summed stats and violation reason."""
            return (
                cmap.join(contrib, "node")
                .groupBy("component")
                .agg(*caps.combine())
                .withColumn("_why", caps.violation(exempt))
            )

        cmap = cc(edges)
        bad = cut(merged(cmap).where(F.col("_why").isNotNull()))
        if bad.limit(1).count():
            whys = {
                r["_why"]: r["n"]
                for r in bad.groupBy("_why").agg(F.count("*").alias("n")).collect()
            }
            result.oversized += whys.pop("oversized", 0)
            result.conflict_hits += sum(n for w, n in whys.items() if w.startswith("conflict:"))
            result.limit_hits += sum(n for w, n in whys.items() if w.startswith("limit:"))
            drops: DataFrame | None = None
            for step in ("own", "bridges", "all"):
                found = _repair_step(step, edges, cmap, bad, contrib, caps, exempt)
                found = cut(found)
                drops = found if drops is None else drops.unionByName(found)
                edges = edges.join(found, ["rule", "unit"], "left_anti")
                cmap = cc(edges)
                bad = cut(merged(cmap).where(F.col("_why").isNotNull()))
                if not bad.limit(1).count():
                    break
            assert drops is not None
            rejected.append(
                tier_links.join(drops, ["rule", "unit"])
                .groupBy("rule", "id_type", "unit_value", F.col("_why").alias("reason"))
                .agg(F.count(F.lit(1)).alias("links"))
            )
        # Relabel prior components, add the tier's new value nodes.
        comp_of = cmap.select(F.col("node").alias("comp"), F.col("component").alias("_new"))
        relabelled = labels.join(comp_of, "comp", "left").select(
            "node", F.coalesce("_new", "comp").alias("comp"), "id_type", UNCOUNTED
        )
        added = (
            _new_nodes(edges, "id_type")
            .join(cmap.select("node", F.col("component").alias("comp")), "node")
            .select("node", "comp", "id_type", F.lit(False).alias(UNCOUNTED))
        )
        labels = cut(relabelled.unionByName(added))
        log.info("identity tier %d done", tier)

    return labels, rejected
