"""Connected components: both engines against the networkx reference.

The behavioural tests run once per engine and, for the dataframe engine, once per way it can
go: every edge labelled in one task (the default at these sizes), the edges split over
several tasks whose local labels the rounds then join (``local_edges`` small), and the
large-star / small-star rounds alone (``local_edges=0``). The GraphFrames runs are skipped
when its JVM classes are not on the classpath. Many small random graphs share one Spark job
(disjoint node ids per graph) because each run costs a handful of Spark jobs per round.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity import checkpoint, components
from cdp.identity.components import (
    GRAPHFRAMES_PACKAGE,
    connected_components,
    graphframes_available,
    reference_components,
)

EDGE_SCHEMA = "src long, dst long"
LABEL_SCHEMA = "node long, component long"
GRAPHFRAMES_SKIP = (
    "GraphFrames JVM classes not on the classpath (org.graphframes.GraphFrame); run with "
    f"--packages {GRAPHFRAMES_PACKAGE} to enable"
)

Edge = tuple[int, int]


# The dataframe engine's ways through, as connected_components arguments: one task; a
# quarter of the input rows per task (so several tasks, whose labels the rounds join); the
# rounds alone.
DATAFRAME_MODES: dict[str, dict[str, Any]] = {
    "dataframe": {"engine": "dataframe"},
    "dataframe-split": {"engine": "dataframe"},
    "dataframe-rounds": {"engine": "dataframe", "local_edges": 0},
}


@pytest.fixture(
    params=[*DATAFRAME_MODES, pytest.param("graphframes", marks=pytest.mark.graphframes)],
)
def engine(request: pytest.FixtureRequest, spark: SparkSession) -> str:
    name: str = request.param
    if name == "graphframes" and not graphframes_available(spark):
        pytest.skip(GRAPHFRAMES_SKIP)
    return name


def _components(edges: DataFrame, engine: str, **kwargs: Any) -> DataFrame:
    """connected_components with the engine fixture's arguments."""
    mode = dict(DATAFRAME_MODES.get(engine, {"engine": engine}))
    if engine == "dataframe-split":
        mode["local_edges"] = max(1, edges.count() // 4)
    return connected_components(edges, **mode, **kwargs)


# ------------------------------------------------------------------------------------------
# helpers


def _edges_df(spark: SparkSession, edges: list[Edge]) -> DataFrame:
    return spark.createDataFrame(edges, EDGE_SCHEMA)


def _labels_df(spark: SparkSession, labels: dict[int, int]) -> DataFrame:
    return spark.createDataFrame(sorted(labels.items()), LABEL_SCHEMA)


def _assert_matches_reference(spark: SparkSession, result: DataFrame, edges: list[Edge]) -> None:
    assert result.columns == ["node", "component"]
    assert_df_equality(
        result,
        _labels_df(spark, reference_components(edges)),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def _random_graph(rng: random.Random, index: int) -> list[Edge]:
    """One random graph with duplicates, reversed duplicates and isolated self-loop nodes.

    Even graphs use small consecutive ids, odd graphs random signed 64-bit ids (like hashed
    identifiers, negatives included). Either way the ids of different graphs are disjoint,
    so many graphs can share one run.
    """
    n = rng.randint(1, 60)
    density = rng.choice([0.0, 0.3, 0.7, 1.0, 1.5, 3.0])
    if index % 2 == 0:
        ids = [index * 1_000 + i for i in range(n)]
        rng.shuffle(ids)
    else:
        ids = [rng.randint(-(2**63), 2**63 - 1) for _ in range(n)]
    edges = [(rng.choice(ids), rng.choice(ids)) for _ in range(int(n * density))]
    edges += [(b, a) for a, b in rng.sample(edges, len(edges) // 4)]  # reversed duplicates
    edges += rng.sample(edges, len(edges) // 4)  # exact duplicates
    edges += [(v, v) for v in ids if rng.random() < 0.3]  # isolated (or not) via self-loops
    if not edges:
        edges = [(ids[0], ids[0])]
    return edges


@pytest.fixture(scope="module")
def random_graphs() -> list[Edge]:
    rng = random.Random(20240607)
    graphs = [_random_graph(rng, i) for i in range(30)]
    # Sanity: odd-graph ids are random 64-bit values, so cross-graph clashes are ~impossible.
    node_sets = [{v for e in g for v in e} for g in graphs]
    assert sum(map(len, node_sets)) == len(set().union(*node_sets))
    return [e for g in graphs for e in g]


# ------------------------------------------------------------------------------------------
# reference


def test_reference_components_small_example() -> None:
    edges = [(3, 1), (1, 2), (7, 7), (9, 8), (8, 9), (5, 6)]
    assert reference_components(edges) == {1: 1, 2: 1, 3: 1, 7: 7, 8: 8, 9: 8, 5: 5, 6: 5}
    assert reference_components([]) == {}


# ------------------------------------------------------------------------------------------
# behaviour, for every engine


def test_many_random_graphs_match_networkx(
    spark: SparkSession, engine: str, random_graphs: list[Edge]
) -> None:
    result = _components(_edges_df(spark, random_graphs), engine)
    _assert_matches_reference(spark, result, random_graphs)


def test_path_of_10k_nodes(spark: SparkSession, engine: str) -> None:
    n = 10_000
    edges = spark.range(n - 1).select(F.col("id").alias("src"), (F.col("id") + 1).alias("dst"))
    result = _components(edges, engine)
    expected = spark.range(n).select(
        F.col("id").alias("node"), F.lit(0).cast("long").alias("component")
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("centre", [0, 100_001], ids=["centre-is-min", "centre-is-max"])
def test_star_with_100k_leaves(spark: SparkSession, engine: str, centre: int) -> None:
    leaves = spark.range(1, 100_001).select(F.col("id").alias("src"))
    edges = leaves.withColumn("dst", F.lit(centre).cast("long"))
    result = _components(edges, engine)
    # Aggregate on the cluster rather than collecting 100k rows into the test.
    summary = result.agg(
        F.count("*").alias("rows"),
        F.countDistinct("node").alias("nodes"),
        F.min("component").alias("lo"),
        F.max("component").alias("hi"),
        F.min("node").alias("first"),
    ).first()
    assert summary is not None
    first_leaf_or_centre = min(1, centre)
    assert summary.asDict() == {
        "rows": 100_001,
        "nodes": 100_001,
        "lo": first_leaf_or_centre,
        "hi": first_leaf_or_centre,
        "first": first_leaf_or_centre,
    }


def test_empty_edge_set(spark: SparkSession, engine: str) -> None:
    result = _components(_edges_df(spark, []), engine)
    assert result.columns == ["node", "component"]
    assert result.count() == 0


def test_only_self_loops_give_singletons(spark: SparkSession, engine: str) -> None:
    edges = [(5, 5), (-3, -3), (5, 5), (2**62, 2**62)]
    result = _components(_edges_df(spark, edges), engine)
    _assert_matches_reference(spark, result, edges)


def test_two_runs_are_identical(spark: SparkSession, engine: str) -> None:
    rng = random.Random(7)
    edges = [(rng.randint(0, 300), rng.randint(0, 300)) for _ in range(250)]
    df = _edges_df(spark, edges)
    first = _components(df, engine)
    second = _components(df, engine)
    assert_df_equality(first, second, ignore_row_order=True, ignore_nullable=True)


def test_custom_columns_int_ids_and_null_endpoints(spark: SparkSession, engine: str) -> None:
    rows = [(1, 2, "x"), (3, None, "y"), (None, None, "z"), (2, 4, "w"), (None, 9, "v")]
    df = spark.createDataFrame(rows, "a int, b int, label string")
    result = _components(df, engine, src="a", dst="b")
    # A half-null row adds its non-null endpoint as an isolated node; all-null rows vanish.
    assert_df_equality(
        result,
        _labels_df(spark, {1: 1, 2: 1, 4: 1, 3: 3, 9: 9}),
        ignore_row_order=True,
        ignore_nullable=True,
    )


# ------------------------------------------------------------------------------------------
# dataframe engine specifics


@pytest.mark.parametrize(
    ("interval", "reliable"),
    [(1, True), (50, True), (3, False)],
    ids=["checkpoint-every-round", "persisted-chain-cap", "local-checkpoints"],
)
def test_lineage_cut_modes(
    spark: SparkSession,
    random_graphs: list[Edge],
    interval: int,
    reliable: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # interval 50 is never reached: rounds are persisted, with a local cut after a few.
    if reliable and checkpoint.checkpoint_dir(spark) is None:
        pytest.skip("the test session has no checkpoint directory")
    if not reliable:  # as if the SparkContext had no checkpoint directory
        monkeypatch.setattr(checkpoint, "checkpoint_dir", lambda _spark: None)
    edges = random_graphs[: len(random_graphs) // 3]
    result = connected_components(
        _edges_df(spark, edges), engine="dataframe", checkpoint_interval=interval, local_edges=0
    )
    _assert_matches_reference(spark, result, edges)


def test_max_rounds_exceeded_raises(spark: SparkSession) -> None:
    # An ordered path of 64 nodes needs about log2(64) + 1 rounds.
    edges = spark.range(63).select(F.col("id").alias("src"), (F.col("id") + 1).alias("dst"))
    with pytest.raises(RuntimeError, match=r"did not converge within max_rounds=2 rounds"):
        connected_components(edges, engine="dataframe", max_rounds=2, local_edges=0)


def test_result_is_materialised(spark: SparkSession) -> None:
    edges = _edges_df(spark, [(1, 2), (2, 3)])
    result = connected_components(edges, engine="dataframe")
    # A checkpointed result scans an existing RDD instead of replaying the rounds.
    plan = result._jdf.queryExecution().optimizedPlan().toString()
    assert "Window" not in plan and "Generate" not in plan


# ------------------------------------------------------------------------------------------
# engine selection and validation


def test_graphframes_available_is_a_bool(spark: SparkSession) -> None:
    assert isinstance(graphframes_available(spark), bool)


def test_explicit_graphframes_without_jar_says_how_to_add_it(spark: SparkSession) -> None:
    if graphframes_available(spark):
        pytest.skip("GraphFrames is on the classpath here")
    with pytest.raises(RuntimeError, match="not on the classpath") as info:
        connected_components(_edges_df(spark, [(1, 2)]), engine="graphframes")
    assert "--packages io.graphframes:graphframes-spark4_2.13:" in str(info.value)


def test_auto_matches_dataframe_engine(spark: SparkSession) -> None:
    edges = [(1, 2), (3, 4), (4, 1), (10, 11), (12, 12)]
    df = _edges_df(spark, edges)
    auto = connected_components(df)  # falls back to dataframe without the jar
    assert_df_equality(
        auto,
        connected_components(df, engine="dataframe"),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_graphframes_engine_plumbing_with_a_stand_in(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GraphFrames path without the jar: a stand-in with arbitrary component ids.

    Checks what this module adds around GraphFrames (vertices incl. isolated nodes, edges,
    arguments, relabelling to the minimum node id), not GraphFrames itself.
    """
    import graphframes

    calls: list[dict[str, object]] = []

    class StandIn:
        def __init__(self, vertices: DataFrame, edges: DataFrame) -> None:
            assert vertices.columns == ["id"] and edges.columns == ["src", "dst"]
            self.vertices, self.edges = vertices, edges

        def connectedComponents(self, **kwargs: object) -> DataFrame:  # GraphFrames API name
            calls.append(kwargs)
            assert self.edges.where("src = dst").count() == 0
            labels = connected_components(self.edges, engine="dataframe")
            # GraphFrames' ids are not the minima: scramble them to prove the relabelling.
            scrambled = labels.select(
                F.col("node").alias("id"), F.xxhash64("component").alias("component")
            )
            return self.vertices.join(scrambled, "id", "left").select(
                "id", F.coalesce("component", F.xxhash64("id")).alias("component")
            )

    monkeypatch.setattr(components, "graphframes_available", lambda _spark: True)
    monkeypatch.setattr(graphframes, "GraphFrame", StandIn)
    edges = [(1, 2), (3, 4), (4, 1), (10, 11), (12, 12), (20, 21), (21, 20)]
    result = connected_components(_edges_df(spark, edges), engine="graphframes")
    _assert_matches_reference(spark, result, edges)
    assert calls and calls[0]["checkpointInterval"] == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"engine": "pregel"}, ValueError, "engine must be one of"),
        ({"max_rounds": 0}, ValueError, "max_rounds must be >= 1"),
        ({"checkpoint_interval": 0}, ValueError, "checkpoint_interval must be >= 1"),
        ({"local_edges": -1}, ValueError, "local_edges must be >= 0"),
        ({"src": "nope"}, ValueError, "no column 'nope'"),
    ],
)
def test_bad_arguments(
    spark: SparkSession, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        connected_components(_edges_df(spark, [(1, 2)]), **kwargs)  # type: ignore[arg-type]


def test_string_ids_are_rejected(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a@x.com", "555")], "src string, dst string")
    with pytest.raises(TypeError, match="must be integral"):
        connected_components(df)


@pytest.mark.parametrize(
    ("local_edges", "said"),
    [(None, "labelled in one task"), (4, "labelled in 3 tasks, then joined across tasks")],
    ids=["one-task", "three-tasks"],
)
def test_first_phase_task_count(
    spark: SparkSession,
    caplog: pytest.LogCaptureFixture,
    local_edges: int | None,
    said: str,
) -> None:
    # 9 distinct edges (the reversed and repeated ones collapse): ceil(9 / 4) = 3 tasks.
    edges = [(1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 5), (8, 9), (9, 10), (11, 12)]
    edges += [(2, 1), (1, 2), (13, 13)]
    kwargs = {} if local_edges is None else {"local_edges": local_edges}
    with caplog.at_level("INFO", logger="cdp.identity.components"):
        result = connected_components(_edges_df(spark, edges), engine="dataframe", **kwargs)
    _assert_matches_reference(spark, result, edges)
    assert said in caplog.text
