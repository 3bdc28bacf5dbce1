"""Connected components of an identity graph, with two interchangeable engines.

Identity resolution links identifiers (e-mail, phone, device, customer number...) that were
seen together; each connected component of that graph is one person. This module labels
every node with the **minimum node id of its component**, so the label does not depend on
the engine, the number of partitions or the run.

Node ids are ``LongType``. Callers hash string identifiers to longs first (for example with
``xxhash64``); any integral column is accepted and widened to long. Hashed ids are also what
keeps the ``dataframe`` engine fast: the large-star / small-star algorithm needs
O(log^2 n) rounds when node labels are in random order, which hashing provides.

Engines:

``dataframe``
    Two phases. First, each task labels the edges it holds with
    ``scipy.sparse.csgraph.connected_components`` (a ``mapInArrow`` over the deduplicated
    edges, at most ``local_edges`` of them per task); when the whole edge list fits one task
    that is the answer, in two Spark jobs. Otherwise the local components of different tasks
    that share a node are joined by the alternating large-star / small-star algorithm of
    Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014), on that
    contracted graph of local labels (``local_edges=0``: on the whole graph, the rounds
    alone). Needs nothing beyond Spark, NumPy and SciPy.
``graphframes``
    ``graphframes.GraphFrame.connectedComponents()``; needs the GraphFrames jar on the
    JVM classpath.
``auto``
    ``graphframes`` when its JVM classes are loadable, else ``dataframe``.

Known limit of the ``dataframe`` engine: each round groups the adjacency list by node, so
the node that becomes the centre of a giant component has all of that component's edges in
one task in the last rounds (skew); fine for millions of members, not for billions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ByteType, IntegerType, LongType, ShortType

from cdp.identity import checkpoint

log = logging.getLogger(__name__)

ENGINES = ("auto", "dataframe", "graphframes")
GRAPHFRAMES_CLASS = "org.graphframes.GraphFrame"
# Maven coordinates of a GraphFrames jar for Spark 4 / Scala 2.13 from the 0.12 line, which
# graphframes-py 0.12 (our Python dependency) drives; its tutorials name this release.
GRAPHFRAMES_PACKAGE = "io.graphframes:graphframes-spark4_2.13:0.12.1"

_INTEGRAL_TYPES = (LongType, IntegerType, ShortType, ByteType)
# Internal column names of the working edge set: always oriented src > dst.
_SRC, _DST = "src", "dst"
# Edges (rows of the deduplicated edge list, self-loops included) one task labels in memory
# in the first phase of the dataframe engine. A task holds about 100 bytes per edge at its
# peak (the endpoints, their sorted distinct values and SciPy's sparse matrix): 25M edges,
# about 2.5 GB in the task's Python worker, take a 1M-person identity graph (19.6M edges)
# in one task. Lower it where executors' Python workers have less memory.
DEFAULT_LOCAL_EDGES = 25_000_000
_LABEL_SCHEMA = "node long, component long"
# Rows per Arrow batch a local task sends back.
_LABEL_BATCH_ROWS = 1 << 20


def graphframes_available(spark: SparkSession) -> bool:
    """True when the driver JVM can load ``org.graphframes.GraphFrame``; False on any failure.

    Spark Connect sessions have no ``sparkContext`` and therefore answer False.
    """
    try:
        jvm: Any = spark.sparkContext._jvm  # None once the context is stopped: caught below
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(GRAPHFRAMES_CLASS, False, loader)
        return True
    except Exception:
        return False


def reference_components(edges: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Pure-Python reference: ``{node: minimum node id of its component}``, via networkx.

    Meant for tests and small checks; a self-loop ``(a, a)`` adds the isolated node ``a``.
    """
    import networkx as nx  # only tests need networkx; keep it out of the library's imports

    graph: nx.Graph = nx.Graph()
    graph.add_edges_from(edges)
    out: dict[int, int] = {}
    for members in nx.connected_components(graph):
        root = min(members)
        for node in members:
            out[node] = root
    return out


def connected_components(
    edges: DataFrame,
    *,
    src: str = "src",
    dst: str = "dst",
    engine: str = "auto",
    max_rounds: int = 100,
    checkpoint_interval: int = 2,
    local_edges: int = DEFAULT_LOCAL_EDGES,
) -> DataFrame:
    """Label each node of an undirected graph with the minimum node id of its component.

    Args:
        edges: one row per edge; columns ``src`` and ``dst`` hold node ids (LongType, or any
            integral type, widened to long). Direction, duplicates and reversed duplicates do
            not matter. A self-loop ``(a, a)`` is how an isolated node is added. A row with
            one null endpoint adds the other endpoint as an isolated node; rows with two null
            endpoints are ignored.
        src, dst: names of the two endpoint columns.
        engine: ``"auto"``, ``"dataframe"`` or ``"graphframes"`` (see the module docstring).
        max_rounds: upper bound on large-star/small-star rounds of the ``dataframe`` engine;
            :class:`RuntimeError` when it has not converged by then. GraphFrames' own
            algorithm runs to convergence and ignores it.
        checkpoint_interval: cut the lineage every this many rounds, with ``checkpoint()``
            when the SparkContext has a checkpoint directory, else ``localCheckpoint()``.
            Rounds in between are persisted; past 4 persisted rounds in a row a
            ``localCheckpoint()`` is taken anyway, since plan size doubles per round.
            Reliable checkpoint files stay in the checkpoint directory unless Spark's
            ``spark.cleaner.referenceTracking.cleanCheckpoints`` is on.
        local_edges: the ``dataframe`` engine's first phase labels at most this many
            distinct edges per task in memory (see :data:`DEFAULT_LOCAL_EDGES`); 0 skips
            it, so that large-star / small-star rounds do all the work.

    Returns:
        A DataFrame ``node: long, component: long`` with exactly one row per node that
        appears in ``edges``. It is already materialised (checkpointed, reliably or
        locally as above), so using it more than once does not rerun the iterations.

    Raises:
        ValueError: unknown engine, ``max_rounds`` / ``checkpoint_interval`` below 1, or
            ``local_edges`` below 0.
        TypeError: an endpoint column is not integral.
        RuntimeError: ``engine="graphframes"`` without the GraphFrames jar, or the
            ``dataframe`` engine did not converge within ``max_rounds``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1; got {max_rounds}")
    if checkpoint_interval < 1:
        raise ValueError(f"checkpoint_interval must be >= 1; got {checkpoint_interval}")
    if local_edges < 0:
        raise ValueError(f"local_edges must be >= 0; got {local_edges}")

    pairs = _normalised_pairs(edges, src, dst)
    spark = edges.sparkSession
    if engine == "auto":
        engine = "graphframes" if graphframes_available(spark) else "dataframe"
        log.debug("connected_components: engine auto -> %s", engine)
    elif engine == "graphframes" and not graphframes_available(spark):
        raise RuntimeError(
            f"engine='graphframes' needs the GraphFrames jar, but the JVM class "
            f"{GRAPHFRAMES_CLASS} is not on the classpath. Start Spark with "
            f"--packages {GRAPHFRAMES_PACKAGE} (any 0.12.x release, to match "
            f"graphframes-py 0.12), or set spark.jars.packages to it, or spark.jars to a "
            f"local copy of the jar; or use engine='dataframe'."
        )
    if engine == "graphframes":
        return _graphframes_components(pairs, checkpoint_interval)
    return _dataframe_components(pairs, max_rounds, checkpoint_interval, local_edges)


# --------------------------------------------------------------------------------------------
# Input handling


def _normalised_pairs(edges: DataFrame, src: str, dst: str) -> DataFrame:
    """Endpoints as two non-null long columns ``a``, ``b`` (one row per input edge)."""
    fields = {f.name: f for f in edges.schema.fields}
    for name in (src, dst):
        if name not in fields:
            raise ValueError(f"edges has no column {name!r}; columns: {sorted(fields)}")
        if not isinstance(fields[name].dataType, _INTEGRAL_TYPES):
            raise TypeError(
                f"edges column {name!r} is {fields[name].dataType.simpleString()}; node ids "
                "must be integral (LongType). Hash string identifiers to longs first, "
                "e.g. F.xxhash64(col)."
            )
    a = F.col(src).cast("long")
    b = F.col(dst).cast("long")
    # A half-null edge still names a node: keep it as a self-loop so the node is labelled.
    return edges.select(F.coalesce(a, b).alias("a"), F.coalesce(b, a).alias("b")).where(
        F.col("a").isNotNull()
    )


# --------------------------------------------------------------------------------------------
# dataframe engine: alternating large-star / small-star


def _pairs_of(*pairs: tuple[str, str]) -> Column:
    """One exploded row per (src, dst) column pair: several edges per input row.

    Exploding an array, rather than unioning projections, keeps a single reference to the
    input in the plan. With a union every round would reference the previous round several
    times and the plan (and its explain string) would grow exponentially between
    checkpoints.
    """
    return F.explode(
        F.array(*(F.struct(F.col(s).alias(_SRC), F.col(d).alias(_DST)) for s, d in pairs))
    ).alias("edge")


def _large_star(e: DataFrame) -> DataFrame:
    """Large-star: connect every larger neighbour of ``u`` to ``u``'s minimal neighbour.

    For each node ``u`` let ``m(u) = min(Γ(u) ∪ {u})``; emit ``(v, m(u))`` for each
    neighbour ``v > u``. Output is oriented ``src > dst`` and may hold duplicates.
    """
    # Adjacency list: both orientations, as (u, v) = (edge.src, edge.dst).
    adjacency = e.select(_pairs_of((_SRC, _DST), (_DST, _SRC))).select(
        F.col("edge.src").alias("u"), F.col("edge.dst").alias("v")
    )
    # A window (not groupBy + join) computes m(u) with one shuffle of the adjacency list.
    m_u = F.least(F.min("v").over(Window.partitionBy("u")), F.col("u"))
    return (
        adjacency.select("u", "v", m_u.alias("m"))
        .where(F.col("v") > F.col("u"))
        .select(F.col("v").alias(_SRC), F.col("m").alias(_DST))
    )


def _small_star(e: DataFrame) -> DataFrame:
    """Small-star: connect ``u`` and all its smaller neighbours to the smallest of them.

    With edges oriented ``src > dst``, ``u``'s smaller neighbours are its ``dst`` values and
    ``m = min(dst)``; emit ``(u, m)`` and ``(v, m)`` for every other smaller neighbour ``v``.
    Duplicate input edges do not change ``min``, so the input need not be deduplicated.
    """
    with_min = e.select(_SRC, _DST, F.min(_DST).over(Window.partitionBy(_SRC)).alias("m"))
    return (
        with_min.select(_pairs_of((_SRC, "m"), (_DST, "m")))
        .select(F.col("edge.src").alias(_SRC), F.col("edge.dst").alias(_DST))
        # (m, m) comes from the row whose dst is the minimum itself: not an edge.
        .where(F.col(_SRC) != F.col(_DST))
    )


_Checksum = tuple[int, Any]


def _checksum_metrics() -> list[Column]:
    """(count, sum of 64-bit hashes) of the proper edges (``src != dst``) of a distinct set.

    Comparing this pair between rounds detects "the edge set did not change" without moving
    edges to the driver; two different sets agree on it with probability ~2^-64.
    """
    proper = F.col(_SRC) != F.col(_DST)
    return [
        F.count(F.when(proper, F.lit(1))).alias("n"),
        F.sum(F.when(proper, F.xxhash64(_SRC, _DST).cast("decimal(38,0)"))).alias("h"),
    ]


# Longest run of merely persisted rounds between two lineage cuts. Under adaptive query
# execution the plan description of a persisted frame embeds its parent's twice (initial and
# final plan), so it doubles with every persisted round: 2^4 is harmless, 2^30 is not.
_MAX_PERSISTED_CHAIN = 4


class _Materialiser:
    """Materialises each round's edge set, computing its checksum in the same job.

    Every ``interval`` rounds the edge set is checkpointed: reliably when the SparkContext
    has a checkpoint directory, else locally; that bounds plan size and recomputation after
    a lost block. Rounds in between are persisted (recomputable from the last reliable
    checkpoint should a block be lost), except that a chain of persisted rounds never
    exceeds ``_MAX_PERSISTED_CHAIN``: a longer one gets a local checkpoint instead.
    """

    def __init__(self, spark: SparkSession, interval: int) -> None:
        self.reliable = checkpoint.checkpoint_dir(spark) is not None
        self.interval = interval
        self._chain = 0
        self._held: list[DataFrame] = []

    def __call__(self, df: DataFrame, round_no: int) -> tuple[DataFrame, _Checksum]:
        # observe() collects the checksum while the materialising job runs: no extra job
        # (and no extra read of the round's edges) per round.
        observation = Observation()
        if round_no % self.interval == 0:
            out = self.cut(df.observe(observation, *_checksum_metrics()))
        elif self._chain >= _MAX_PERSISTED_CHAIN:
            out = self.cut(df.observe(observation, *_checksum_metrics()), reliable=False)
        else:
            out = df.persist(StorageLevel.MEMORY_AND_DISK)
            # The noop sink runs the plan (filling the cache) and discards the rows.
            writer = out.observe(observation, *_checksum_metrics()).write
            writer.format("noop").mode("overwrite").save()
            self._chain += 1
        self._held.append(out)
        metrics = observation.get
        return out, (int(metrics["n"]), metrics["h"])

    def cut(self, df: DataFrame, *, reliable: bool | None = None) -> DataFrame:
        """Eagerly checkpoint ``df`` (one job) and return the plan-free result."""
        self._chain = 0
        return checkpoint.cut(df, reliable=self.reliable if reliable is None else reliable)

    def release_older(self, keep: int) -> None:
        """Unpersist all but the newest ``keep`` frames (a no-op for checkpointed ones)."""
        while len(self._held) > keep:
            self._held.pop(0).unpersist()


def _dataframe_components(
    pairs: DataFrame, max_rounds: int, checkpoint_interval: int, local_edges: int = 0
) -> DataFrame:
    materialise = _Materialiser(pairs.sparkSession, checkpoint_interval)
    # Canonical, deduplicated edges (src > dst), round 0. Self-loops stay in only to
    # remember isolated nodes: the checksum skips them and the rounds filter them out.
    canonical, checksum = materialise(
        pairs.select(F.greatest("a", "b").alias(_SRC), F.least("a", "b").alias(_DST)).distinct(),
        round_no=0,
    )
    try:
        if local_edges > 0:
            return _two_phase(canonical, checksum[0], local_edges, materialise, max_rounds)
        edges, rounds = _iterate_stars(
            canonical.where(F.col(_SRC) != F.col(_DST)), checksum, materialise, max_rounds
        )
        log.info("connected_components: dataframe engine converged after %d rounds", rounds)
        # Leaves point at their centre; centres and isolated nodes label themselves. A node
        # with both a self-loop and real edges gets min(itself, centre) = centre.
        labels = (
            edges.select(F.col(_SRC).alias("node"), F.col(_DST).alias("component"))
            .unionByName(edges.select(F.col(_DST).alias("node"), F.col(_DST).alias("component")))
            .unionByName(
                canonical.where(F.col(_SRC) == F.col(_DST)).select(
                    F.col(_SRC).alias("node"), F.col(_SRC).alias("component")
                )
            )
            .groupBy("node")
            .agg(F.min("component").alias("component"))
        )
        # Materialised, so callers can reuse the result without rerunning the rounds.
        return materialise.cut(labels)
    finally:
        materialise.release_older(keep=0)


def _two_phase(
    canonical: DataFrame,
    proper_edges: int,
    local_edges: int,
    materialise: _Materialiser,
    max_rounds: int,
) -> DataFrame:
    """Components in memory per task, then large-star / small-star over what tasks share.

    ``canonical``: the materialised, deduplicated edges (self-loops included);
    ``proper_edges``: how many of them are not self-loops (the tasks' share is sized on it).
    """
    tasks = max(1, -(-proper_edges // local_edges))
    if tasks == 1:
        # One task reads the materialised edges as they lie (no shuffle) and labels them all:
        # the labels are final.
        labels = materialise.cut(canonical.coalesce(1).mapInArrow(_local_labels, _LABEL_SCHEMA))
        log.info("connected_components: %d edges labelled in one task", proper_edges)
        return labels
    # Each task labels its share of the edges with the minimum node of each local component.
    # A node whose edges fell to several tasks has a label from each; those labels name parts
    # of one component, so they are joined by the rounds (on far fewer nodes than the graph).
    local = materialise.cut(
        canonical.repartition(tasks, _SRC, _DST).mapInArrow(_local_labels, _LABEL_SCHEMA)
    )
    smallest = F.min("component").over(Window.partitionBy("node"))
    local = local.select("node", "component", smallest.alias("smallest"))
    between = local.where(F.col("component") != F.col("smallest")).select(
        F.col("component").alias("a"), F.col("smallest").alias("b")
    )
    # A local label is its local component's minimum node; the global minimum of a component
    # is the local label wherever it appears, so the minimum over the joined labels is it.
    joined = _dataframe_components(between, max_rounds, materialise.interval)
    labels = (
        local.select("node", "smallest")
        .distinct()
        .join(joined.withColumnRenamed("node", "smallest"), "smallest", "left")
        .select("node", F.coalesce("component", "smallest").alias("component"))
    )
    log.info(
        "connected_components: %d edges labelled in %d tasks, then joined across tasks",
        proper_edges,
        tasks,
    )
    return materialise.cut(labels)


def _local_labels(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: every node of the task's edges with its local component's
    minimum node (``scipy.sparse.csgraph.connected_components`` on the task's edges)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for batch in batches:
        sources.append(batch.column(0).to_numpy())
        targets.append(batch.column(1).to_numpy())
    edges = sum(len(part) for part in sources)
    if edges == 0:
        return
    # Dense indices for the 64-bit ids; np.unique sorts, so index order is node order.
    nodes, index = np.unique(np.concatenate(sources + targets), return_inverse=True)
    del sources, targets
    index = index.astype(np.int32 if len(nodes) < 2**31 else np.int64)
    graph = coo_matrix(
        (np.ones(edges, dtype=np.bool_), (index[:edges], index[edges:])),
        shape=(len(nodes), len(nodes)),
    )
    del index
    _, component = scipy_components(graph, directed=False)
    del graph
    # Nodes are sorted, so each component's first member in index order is its minimum.
    _, first = np.unique(component, return_index=True)
    labels = nodes[first][component]
    for start in range(0, len(nodes), _LABEL_BATCH_ROWS):
        stop = start + _LABEL_BATCH_ROWS
        yield pa.RecordBatch.from_arrays(
            [pa.array(nodes[start:stop]), pa.array(labels[start:stop])],
            names=["node", "component"],
        )


def _iterate_stars(
    edges: DataFrame, previous: _Checksum, materialise: _Materialiser, max_rounds: int
) -> tuple[DataFrame, int]:
    """Alternate large-star and small-star until a round leaves the edge set unchanged.

    ``previous`` is the checksum of ``edges``. Returns the final edge set (a forest of
    stars, each centred on its component's minimum) and the number of rounds run, the last
    one being the round that changed nothing.
    """
    log.debug("connected_components: %d distinct edges in", previous[0])
    for round_no in range(1, max_rounds + 1):
        started = time.monotonic()
        # Deduplicate once per round, after small-star: neither star step is affected by
        # duplicates in its input (both only take a min over neighbours).
        edges, current = materialise(_small_star(_large_star(edges)).distinct(), round_no)
        materialise.release_older(keep=1)
        log.debug(
            "connected_components round %d: %d edges, %.1fs",
            round_no,
            current[0],
            time.monotonic() - started,
        )
        if current == previous:
            # The alternation reaches a forest of stars centred on the component minima
            # (Kiveris et al.); a round is a deterministic function of the edge set, so
            # once one changes nothing no later round can, and we are at that forest.
            # (Checked exhaustively for every edge set on up to 7 nodes.)
            return edges, round_no
        previous = current
    raise RuntimeError(
        f"connected_components (dataframe engine) did not converge within "
        f"max_rounds={max_rounds} rounds ({previous[0]} edges still changing); "
        "raise max_rounds"
    )


# --------------------------------------------------------------------------------------------
# graphframes engine


def _graphframes_components(pairs: DataFrame, checkpoint_interval: int) -> DataFrame:
    from graphframes import GraphFrame  # the Python half; its JVM half was checked above

    vertices = (
        pairs.select(F.col("a").alias("id"))
        .unionByName(pairs.select(F.col("b").alias("id")))
        .distinct()
    )
    gf_edges = pairs.where(F.col("a") != F.col("b")).select(
        F.col("a").alias("src"), F.col("b").alias("dst")
    )
    components = GraphFrame(vertices, gf_edges).connectedComponents(
        checkpointInterval=checkpoint_interval,
        # The SparkContext's checkpoint dir when there is one, as in the dataframe engine.
        use_local_checkpoints=checkpoint.checkpoint_dir(pairs.sparkSession) is None,
    )
    # GraphFrames' component ids are its own business; relabel with the minimum node id so
    # both engines return identical DataFrames.
    smallest = F.min("id").over(Window.partitionBy("component"))
    labels = components.select(
        F.col("id").cast("long").alias("node"), smallest.cast("long").alias("component")
    )
    # Materialised like the dataframe engine's result, so reuse does not redo the relabelling.
    return _Materialiser(pairs.sparkSession, checkpoint_interval).cut(labels)
