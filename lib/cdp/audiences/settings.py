"""The ``activation`` section of the run configuration: where audiences are declared and how
they are exported. Kept free of other cdp imports so :mod:`cdp.config` can import it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cdp.export.settings import ExportConfig


class ActivationConfig(BaseModel):
    """Audience declarations (``audiences_dirs``) and their delivery (``export``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Directories of audience YAML files; relative ones are taken from the conf directory.
    audiences_dirs: list[str] = Field(default_factory=lambda: ["audiences"])
    export: ExportConfig = Field(default_factory=ExportConfig)
