"""The allow-list of YAML expressions (lib/cdp/expressions.py) and where loaders apply it:
source mappings and paths, silver rules, audience rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.config import ConfigError, load_config
from cdp.expressions import (
    ExpressionError,
    check_expression,
    checked_expr,
    expected_analysis_errors,
    expression_problem,
    quote_identifier,
)

CONF = Path(__file__).resolve().parents[1] / "conf"

ALLOWED = [
    "lower(email)",
    "coalesce(phone, mobile, '')",
    "CASE WHEN status = 'A' THEN 'active' ELSE 'other' END",
    "date_add(to_date(signup, 'yyyy-MM-dd'), 30) <= current_date()",
    "datediff(current_date, last_seen) > 90",
    "a IS NOT NULL AND b > 3",
    "transform(tags, t -> upper(t))",
    "input_file_name()",
]

REFUSED = [
    ("java_method('java.lang.System', 'getenv', 'HOME')", "function 'java_method' is not allowed"),
    ("reflect('java.lang.Runtime', 'getRuntime')", "function 'reflect' is not allowed"),
    ("REFLECT('java.lang.Runtime', 'getRuntime')", "function 'REFLECT' is not allowed"),
    ("try_reflect('java.lang.Thread', 'sleep', 1)", "function 'try_reflect' is not allowed"),
    ("/* /* */ */ java_method('a', 'b')", "function 'java_method' is not allowed"),
    ("(SELECT 1) = 1", "subqueries are not allowed"),
    ("exists(SELECT * FROM parquet.`/etc`)", "subqueries are not allowed"),
    ("email IN (SELECT email FROM csv.`/data/landing/crm`)", "subqueries are not allowed"),
    ("lower(email) = (SELECT max(x) FROM parquet.`/etc`)", "subqueries are not allowed"),
    ("my_udf(email)", "function 'my_udf' is not allowed (not a Spark built-in function)"),
    ("cat.db.fn(email)", "function 'cat.db.fn' is not allowed (not a Spark built-in"),
    ("IDENTIFIER('java_method')('a', 'b')", "IDENTIFIER(...) is not allowed"),
]


def test_quote_identifier_doubles_backticks() -> None:
    assert quote_identifier("email") == "`email`"
    assert quote_identifier("a`b") == "`a``b`"
    assert quote_identifier("x` + java_method('a','b') + `") == (
        "`x`` + java_method('a','b') + ```"
    )


def test_the_module_imports_without_spark() -> None:
    import subprocess
    import sys

    code = "import sys, cdp.expressions; assert 'pyspark' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_allowed_and_refused_expressions(spark: SparkSession) -> None:
    for text in ALLOWED:
        assert expression_problem(text, spark) is None, text
    for text, why in REFUSED:
        problem = expression_problem(text, spark)
        assert problem is not None and problem.startswith(why), (text, problem)
    # Text Spark cannot parse is left to the existing validation: it cannot run either.
    assert expression_problem("lower(email", spark) is None
    with pytest.raises(ExpressionError, match=r"^conf/audiences/x\.yaml: rule: function 'java_"):
        check_expression(REFUSED[0][0], where="conf/audiences/x.yaml", key="rule", spark=spark)
    with pytest.raises(ExpressionError, match=r"^s\.yaml: mapping\.email: subqueries"):
        checked_expr("(SELECT 1)", where="s.yaml", key="mapping.email", spark=spark)


def test_a_backticked_column_name_from_a_file_stays_one_column(spark: SparkSession) -> None:
    from pyspark.sql import functions as F

    df = spark.createDataFrame([("x",)], "`a``b` string")
    assert df.columns == ["a`b"]
    row = df.select(F.expr(f"try_cast({quote_identifier('a`b')} AS string)").alias("v")).first()
    assert row is not None and row["v"] == "x"


def test_shipped_rules_and_audiences_pass(spark: SparkSession) -> None:
    from cdp.audiences.spec import load_audiences
    from cdp.silver.canonical import TABLES
    from cdp.silver.rules import load_rules
    from cdp.sources import load_sources

    # The shipped sources and audiences are the demo profile's.
    config = load_config(conf_dir=CONF, conf_files=[CONF / "demo.yaml"], environ={})
    assert load_sources(config)
    rules = load_rules(config.rule_files()["silver.rules_file"], tables=set(TABLES))
    for table_rules in rules.values():
        for rule in table_rules:
            assert expression_problem(rule.column, spark) is None, rule
    for spec in load_audiences(config):
        assert expression_problem(spec.rule, spark) is None, spec.name


def _conf(tmp_path: Path, **extra: str) -> Path:
    conf = tmp_path / "conf"
    for sub in ("sources", "audiences", "rules"):
        (conf / sub).mkdir(parents=True, exist_ok=True)
    (conf / "base.yaml").write_text(
        f"env: local\nlanding_root: {tmp_path / 'landing'}\n"
        + "".join(f"{k}: {v}\n" for k, v in extra.items())
    )
    return conf


SOURCE = "name: crm\nkind: profile\nformat: csv\n"


def test_loaders_refuse_escaping_expressions_naming_file_and_key(
    spark: SparkSession, tmp_path: Path
) -> None:
    from cdp.audiences.spec import AudienceError, load_audiences
    from cdp.silver.rules import load_rules
    from cdp.sources import load_sources

    conf = _conf(tmp_path)
    source = conf / "sources" / "crm.yaml"
    source.write_text(SOURCE + 'path: crm/*.csv\nmapping: {email: \'java_method("a", "b")\'}\n')
    with pytest.raises(ConfigError, match=r"crm\.yaml: mapping\.email: function 'java_method'"):
        load_sources(load_config(conf_dir=conf, environ={}))

    rules = conf / "rules" / "silver.yaml"
    rules.write_text(
        "events:\n  - {name: ok, type: not_null, column: event_type}\n"
        '  - {name: bad, type: expression, column: "exists(select * from parquet.`/etc`)"}\n'
    )
    with pytest.raises(ConfigError, match=r"silver\.yaml: events\[1\]\.column: subqueries"):
        load_rules(rules, tables={"events"})

    audience = conf / "audiences" / "x.yaml"
    audience.write_text(
        "name: x\npurpose: marketing\nchannel: email\nrule: REFLECT('java.lang.System', 'exit', 1)\n"
    )
    with pytest.raises(AudienceError, match=r"x\.yaml: rule: function 'REFLECT' is not allowed"):
        load_audiences(load_config(conf_dir=conf, environ={}))


def test_check_rules_refuses_before_analysing(spark: SparkSession) -> None:
    from cdp.audiences.members import check_rules, rule_condition
    from cdp.audiences.spec import AudienceError, AudienceSpec

    spec = AudienceSpec.model_construct(
        name="x",
        purpose="marketing",
        channel="email",
        rule="customer_id IN (SELECT customer_id FROM parquet.`/nonexistent`)",
        source_file="conf/audiences/x.yaml",
    )
    frame = spark.createDataFrame([("c1",)], "customer_id string")
    with pytest.raises(AudienceError, match=r"x\.yaml: rule: subqueries are not allowed"):
        check_rules([spec], frame)
    with pytest.raises(ExpressionError, match=r"x\.yaml: rule: subqueries are not allowed"):
        rule_condition(spec)


@pytest.mark.parametrize(
    "path",
    ["../../etc/*", "crm/../../secrets/*", "{crm,../x}/*.csv", "crm/\\.\\./\\.\\./x", "/etc/*"],
)
def test_a_source_path_leaving_the_landing_root_is_refused(tmp_path: Path, path: str) -> None:
    from cdp.sources import load_sources

    conf = _conf(tmp_path)
    (conf / "sources" / "crm.yaml").write_text(SOURCE + f"path: '{path}'\n")
    with pytest.raises(ConfigError, match=r"crm\.yaml: path: .*(outside the landing root|'\.\.')"):
        load_sources(load_config(conf_dir=conf, environ={}))


def test_source_paths_inside_the_landing_root_or_explicitly_allowed(tmp_path: Path) -> None:
    from cdp.sources import load_sources, path_problem

    landing = tmp_path / "landing"
    for inside in ["crm/*.csv", "crm/../crm/*.csv", f"{landing}/crm/*.csv", f"file://{landing}/x"]:
        assert path_problem(inside, str(landing)) is None, inside
    assert path_problem("s3://bucket/exports/crm/*", "s3://bucket/exports") is None
    assert path_problem("s3://other/exports/crm/*", "s3://bucket/exports") is not None
    assert path_problem("s3://bucket/exports2/crm/*", "s3://bucket/exports") is not None

    conf = _conf(tmp_path, ingest="{allow_paths_outside_landing: true}")
    (conf / "sources" / "crm.yaml").write_text(SOURCE + "path: /elsewhere/crm/*.csv\n")
    (spec,) = load_sources(load_config(conf_dir=conf, environ={}))
    assert spec.glob_for(str(landing)) == "/elsewhere/crm/*.csv"


def test_expected_analysis_errors_raise_without_pysparks_error_log(spark: SparkSession) -> None:
    import logging

    from pyspark.errors import AnalysisException
    from pyspark.logger import PySparkLogger

    class Recorder(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    # A handler of the test's own: PySpark's stream handler keeps the stderr of whichever test
    # first made the logger, which no capture fixture of a later test sees.
    recorder = Recorder()
    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    logger.addHandler(recorder)
    frame = spark.createDataFrame([], "a string")
    try:
        with expected_analysis_errors(), pytest.raises(AnalysisException):
            frame.selectExpr("no_such_column")
        assert recorder.messages == []
        # Outside the block PySpark logs it as it did (so the check above can fail).
        with pytest.raises(AnalysisException):
            frame.selectExpr("no_such_column")
        assert any("UNRESOLVED_COLUMN" in m for m in recorder.messages)
    finally:
        logger.removeHandler(recorder)
