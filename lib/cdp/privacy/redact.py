"""Texts people read without being entitled to personal data: error messages, log files.

An error text travels further than the tables: ``ops/run_log.error``, the run's log file, the
terminal and the HTML report. Spark quotes the offending value into its messages (an ANSI
cast error reads ``The value 'ann@example.com' of the type "STRING" cannot be cast to
"INT"``), so every such text goes through :func:`redact` before it is stored or shown.

What is replaced, deliberately over-eager (a lost literal in an error costs a look at the
data; a leaked e-mail in a log cannot be called back):

* single-quoted literals (Spark's and Python's way of quoting a value), and double-quoted
  ones that hold a single quote (Python's repr of such a string); double-quoted type names
  and paths (``"STRING"``, ``File "/x/y.py"``) are kept, as they are not values;
* the value of Spark's ``The value X of the type`` even when unquoted (numbers);
* anything that looks like an e-mail address or a phone number, quoted or not.

URIs shown to people (the MLflow tracking URI, export targets) go through :func:`safe_uri`,
which drops the credentials a URI may carry (``user:password@``, a token in the query).

Free of Spark: the runner and the CLI import it.
"""

from __future__ import annotations

import re

from cdp.errors import ConfigError

# scheme://userinfo@ : the userinfo is everything before "@" in the authority (no "/?#").
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")

# Placeholders: the kind of thing that was there, never any part of it.
LITERAL = "'<redacted>'"
EMAIL = "<email>"
PHONE = "<phone>"

# A quote not glued to a word on its outer side ("can't" and "don't" are not a literal);
# backslash escapes inside, as Spark (toSQLValue) and Python's repr write them.
_SINGLE = re.compile(r"(?<![\w'])'(?:[^'\\\n]|\\.)*'(?![\w])")
_DOUBLE_WITH_QUOTE = re.compile(r'(?<!\w)"(?:[^"\\\n]|\\.)*\'(?:[^"\\\n]|\\.)*"(?!\w)')
_SPARK_VALUE = re.compile(r"(\bThe value )(\S+)( of the type\b)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# A candidate phone: digits with the separators people write (space, dash, dot, brackets),
# optionally led by "+"; judged by :func:`_phone` on its digit count and shape.
_PHONE_CANDIDATE = re.compile(r"(?<![\w.+\-])\+?\(?\d[\d ().\-]{4,}\d(?![\w@])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DECIMAL = re.compile(r"\d+\.\d+")


def _phone(match: re.Match[str]) -> str:
    """``<phone>`` for what reads as a phone number; dates, IPs, decimals and counts are kept.

    7 to 15 digits (E.164's ceiling) when written with a ``+`` or separators, 9 to 15 when a
    bare run of digits (so row counts such as ``1000000`` stay readable).
    """
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or _DATE.search(text):
        return text
    if _IPV4.fullmatch(text) or _DECIMAL.fullmatch(text):
        return text
    bare = text.isdigit()
    if bare and digits < 9:
        return text
    return PHONE


def redact(text: str) -> str:
    """``text`` with quoted literals, e-mail addresses and phone numbers replaced.

    Idempotent: redacting a redacted text changes nothing.
    """
    out = _SPARK_VALUE.sub(lambda m: f"{m.group(1)}{LITERAL}{m.group(3)}", text)
    out = _DOUBLE_WITH_QUOTE.sub(LITERAL, out)
    out = _SINGLE.sub(LITERAL, out)
    out = _EMAIL.sub(EMAIL, out)
    return _PHONE_CANDIDATE.sub(_phone, out)


def redact_contacts(text: str) -> str:
    """``text`` with e-mail addresses and phone numbers replaced, quoted literals kept."""
    return _PHONE_CANDIDATE.sub(_phone, _EMAIL.sub(EMAIL, text))


def _quotes_config_only(exc: BaseException) -> bool:
    # A ConfigError is written by the platform about a configuration file (a key, a rule, a
    # field name): its quoted literals are what the engineer needs to find the mistake, and
    # configuration is not personal data. Contacts are still masked, in case a rule file
    # quotes one.
    return isinstance(exc, ConfigError)


def message_text(exc: BaseException) -> str:
    """The message of ``exc`` fit to store or show: redacted unless it is about config."""
    return redact_contacts(str(exc)) if _quotes_config_only(exc) else redact(str(exc))


def traceback_text(exc: BaseException, formatted: str) -> str:
    """A formatted traceback of ``exc``, redacted like :func:`message_text`."""
    return redact_contacts(formatted) if _quotes_config_only(exc) else redact(formatted)


def error_text(exc: BaseException) -> str:
    """``"<Type>: <message>"`` with the message redacted (the type name is never data)."""
    return f"{type(exc).__name__}: {message_text(exc)}"


def safe_uri(uri: str) -> str:
    """``uri`` without userinfo (``user:password@``), query and fragment, for display.

    Tokens travel in either place (``https://user:token@host``, ``...?token=...``); what
    is left still says which server, bucket or file is meant. Not for connecting.
    """
    out = _USERINFO.sub(r"\1", uri)
    return out.split("#", 1)[0].split("?", 1)[0]
