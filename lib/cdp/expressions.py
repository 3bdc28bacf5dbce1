"""Expressions that cannot escape: the allow-list every YAML expression passes before it runs.

Source ``mapping`` values, silver rule ``column`` values, audience ``rule`` values and notebook
segments are Spark SQL expressions written in YAML, some by marketers, and they run with the
pipeline's access to every table and file. Resolving them is not enough: ``java_method(...)``
calls into the JVM and ``(SELECT ... FROM parquet.`/any/path`)`` reads any file the job can
read, and both resolve. So every such expression is parsed and refused unless:

* every function it calls is one of Spark's built-in functions (:data:`PLATFORM_FUNCTIONS` adds
  the few the platform itself registers), compared case-insensitively, and not in
  :data:`DENIED_FUNCTIONS`. A qualified name (``cat.db.f``), a persistent or temporary function
  (user UDFs, SQL functions) is not built in and is refused;
* it holds no subquery (scalar, ``EXISTS``, ``IN (SELECT ...)``, lateral): any expression that
  carries a query plan is refused, so no table, view or ``format.`path``` relation is reachable;
* it uses no ``IDENTIFIER(...)`` clause, whose function name is only known after parsing.

Why Spark's own parser and not a Python SQL parser (sqlglot): the check must see exactly the
tree Spark will run. Two parsers disagree on details (Spark nests ``/* /* */ */`` comments,
honours backslash escapes in strings, has its own lambda and ``IDENTIFIER`` syntax), and each
disagreement is a way to show the checker one expression and Spark another:
``/* /* */ */ java_method(...)`` is a comment and a call to Spark. The session's parser is the
one ``F.expr`` uses, so what is checked is what runs. Text that parser cannot parse is left to
the callers' existing validation (which names the syntax error): it cannot run either.

The decisions on borderline built-ins, so that they are made once:

* refused: ``reflect``, ``java_method``, ``try_reflect`` (call any static Java method) and
  ``secret`` (Databricks: reads a secret scope);
* allowed: ``input_file_name``, ``input_file_block_start``, ``input_file_block_length`` (the
  path of the file the row came from: metadata the bronze lineage keeps anyway),
  ``current_user`` and the other session functions, ``raise_error`` / ``assert_true`` (they can
  fail a run, which a bad expression can do anyway). ``read_files`` is not a built-in of open
  source Spark and is a table-valued function where it exists: refused as not built in.

When the check runs: loaders (:func:`check_at_load`) check while a SparkSession is active,
which it is at the start of every stage, before anything is written; the errors name the file
and the key. The functions that turn the text into a column (:func:`checked_expr`) check again,
always, so no path reaches ``F.expr`` unchecked (a loader called with no session at all, in a
unit test or a tool, defers to them). Importing this module needs no Spark.

Identifiers that come from data (column names read from landing files) are put into expression
text only through :func:`quote_identifier`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cdp.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

__all__ = [
    "DENIED_FUNCTIONS",
    "PLATFORM_FUNCTIONS",
    "ExpressionError",
    "check_at_load",
    "check_expression",
    "checked_expr",
    "expression_problem",
    "quote_identifier",
]

# Built-ins that reach outside the row: the JVM (any static method) and secret stores.
DENIED_FUNCTIONS: frozenset[str] = frozenset({"reflect", "java_method", "try_reflect", "secret"})

# Functions the platform registers on its own session that YAML may call (none today).
PLATFORM_FUNCTIONS: frozenset[str] = frozenset()

_CATALYST = "org.apache.spark.sql.catalyst"
# Expressions carrying a query plan: every subquery form is one of these.
_PLAN_EXPRESSION = f"{_CATALYST}.expressions.PlanExpression"
_UNRESOLVED_FUNCTION = f"{_CATALYST}.analysis.UnresolvedFunction"
_IDENTIFIER_CLAUSE = f"{_CATALYST}.analysis.ExpressionWithUnresolvedIdentifier"
# Subquery class names, used when the PlanExpression class itself cannot be loaded.
_SUBQUERY_NAMES = ("Subquery", "Exists", "ListQuery", "PlanExpression")

# Spark's built-in function names (lower case), read once per process from the JVM.
_builtins: frozenset[str] | None = None
# (session, text) -> the verdict: a check walks the tree through py4j (milliseconds a node),
# and the same mapping is checked at load and again where it becomes a column.
_verdicts: dict[tuple[int, str], str | None] = {}
_MAX_VERDICTS = 4096


class ExpressionError(ConfigError):
    """A YAML expression uses something outside the allow-list; names the file and the key."""


def quote_identifier(name: str) -> str:
    """``name`` as a Spark SQL quoted identifier: in backticks, a backtick inside doubled.

    For column names that come from data (a CSV header, a JSON key): ``a`b`` is ```a``b```."""
    return "`" + name.replace("`", "``") + "`"


def _session(spark: SparkSession | None) -> SparkSession | None:
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    # The active session is per thread (on the JVM side too); a stage run from a worker thread
    # still has the process's session, which is the one F.expr would use.
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    default = SparkSession._instantiatedSession
    if default is not None and default._sc._jsc is not None:
        return default
    return None


def _builtin_names(jvm: Any) -> frozenset[str]:
    global _builtins
    if _builtins is None:
        registry = getattr(jvm, f"{_CATALYST}.analysis.FunctionRegistry$").__getattr__("MODULE$")
        listed = registry.builtin().listFunction()
        _builtins = frozenset(listed.apply(i).funcName().lower() for i in range(listed.size()))
    return _builtins


def _is_parse_error(exc: BaseException) -> bool:
    java = getattr(exc, "java_exception", None)
    name = java.getClass().getName() if java is not None else type(exc).__name__
    return name.endswith("ParseException")


def _node_problem(node: Any, jvm: Any, plan_class: Any) -> str | None:
    cls = node.getClass().getName()
    if (plan_class is not None and plan_class.isInstance(node)) or (
        plan_class is None and any(s in cls.rsplit(".", 1)[-1] for s in _SUBQUERY_NAMES)
    ):
        return "subqueries are not allowed (an expression reads only the row it is given)"
    if cls == _IDENTIFIER_CLAUSE:
        return "IDENTIFIER(...) is not allowed (name the function directly)"
    if cls == _UNRESOLVED_FUNCTION:
        parts = node.nameParts()
        name = ".".join(str(parts.apply(i)) for i in range(parts.size()))
        lowered = name.lower()
        if lowered in DENIED_FUNCTIONS:
            return f"function '{name}' is not allowed"
        if parts.size() != 1 or lowered not in (_builtin_names(jvm) | PLATFORM_FUNCTIONS):
            return f"function '{name}' is not allowed (not a Spark built-in function)"
    return None


def expression_problem(text: str, spark: SparkSession) -> str | None:
    """Why ``text`` is refused, or None when it passes (or Spark cannot parse it at all)."""
    key = (id(spark), text)
    if key not in _verdicts:
        if len(_verdicts) >= _MAX_VERDICTS:
            _verdicts.clear()
        _verdicts[key] = _problem(text, spark)
    return _verdicts[key]


def _problem(text: str, spark: SparkSession) -> str | None:
    jspark = getattr(spark, "_jsparkSession", None)
    if jspark is None:
        # Spark Connect has no JVM parser on the client: refuse rather than run unchecked.
        return "cannot be checked on this session (no JVM parser: Spark Connect?)"
    jvm: Any = spark._jvm
    try:
        root = jspark.sessionState().sqlParser().parseExpression(text)
    except Exception as exc:
        if _is_parse_error(exc):
            return None
        raise
    try:
        plan_class = jvm.java.lang.Class.forName(_PLAN_EXPRESSION)
    except Exception:  # pragma: no cover - the class exists in every Spark 3.x/4.x
        plan_class = None
    stack = [root]
    while stack:
        node = stack.pop()
        problem = _node_problem(node, jvm, plan_class)
        if problem:
            return problem
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
    return None


def check_expression(text: str, *, where: str, key: str, spark: SparkSession | None = None) -> None:
    """Raise :class:`ExpressionError` (``<where>: <key>: <why>``) unless ``text`` passes.

    ``spark``: the session whose parser runs the expression (default: the active one); with
    no session at all the check cannot run and that is an error too."""
    session = _session(spark)
    if session is None:
        raise ExpressionError(f"{where}: {key}: cannot be checked without a SparkSession")
    problem = expression_problem(text, session)
    if problem:
        raise ExpressionError(f"{where}: {key}: {problem}")


def check_at_load(text: str, *, where: str, key: str) -> None:
    """The loaders' check: as :func:`check_expression` while a session is active; deferred to
    :func:`checked_expr` (which always checks) when there is none."""
    if _session(None) is not None:
        check_expression(text, where=where, key=key)


def checked_expr(text: str, *, where: str, key: str, spark: SparkSession | None = None) -> Column:
    """``F.expr(text)`` after :func:`check_expression`: the one way YAML text becomes a column."""
    from pyspark.sql import functions as F

    check_expression(text, where=where, key=key, spark=spark)
    return F.expr(text)


# PySpark 4 logs every analysis error that carries a query context at ERROR, with the JVM's
# whole stack trace as JSON on stderr, as it converts the error: also the ones a caller expects
# and handles (a declaration check trying a column name unquoted first, a backfill's column
# looked up in more files). A user saw pages of ERROR before a run that succeeded.
PYSPARK_QUERY_CONTEXT_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


@contextmanager
def expected_analysis_errors() -> Iterator[None]:
    """Keep PySpark's query-context loggers quiet while the block probes expressions whose
    failure it handles itself; the errors still raise, and whatever the block cannot handle
    is reported by its caller."""
    from pyspark.logger import PySparkLogger

    # Through PySparkLogger: a logger of another class under these names would break
    # PySpark's own calls (they pass keyword fields only PySparkLogger accepts).
    loggers = [PySparkLogger.getLogger(n) for n in PYSPARK_QUERY_CONTEXT_LOGGERS]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.disabled = was
