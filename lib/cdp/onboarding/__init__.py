"""Onboarding a company's own files: ``cdp source draft`` proposes a source declaration from a
sample of the files, ``cdp source check`` shows what silver would make of a declared source.

Modules: :mod:`~cdp.onboarding.sample` (read a bounded sample in plain Python: format,
compression, encoding, delimiter, header, row tag), :mod:`~cdp.onboarding.profile_columns`
(what each column's values look like), :mod:`~cdp.onboarding.propose` (kind, keys and mapping
from the profiles), :mod:`~cdp.onboarding.draft` (the YAML, checked by the project's own
loader), :mod:`~cdp.onboarding.check` (20 rows through the bronze reader, the mapping and the
silver standardizers). Nothing here prints a sampled value: only column names and counts.
"""
