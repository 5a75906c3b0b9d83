"""The record of one format: what the rest of the program needs to know about it, as data, and the module that
implements it (its export and its runtime backend).

Importing this module (or the registry) imports neither torch nor any runtime: the command line reads the
format names from here before anything heavy is loaded. The implementing module is imported when a format is
used; it provides `export(job) -> Path`, `open_backend(path, device) -> Backend` and
`read_metadata(path) -> ExportMetadata`, and may provide `check_version()` (a runtime too old to use).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from yolonas_cli.core import install
from yolonas_cli.core.errors import MissingExtraError

if TYPE_CHECKING:
    from yolonas_cli.engine.backend import Backend
    from yolonas_cli.formats.job import ExportJob
    from yolonas_cli.formats.metadata import ExportMetadata

Requirement = tuple[str, str]  # (module to import, the pip command that installs it)


def pip_extra(name: str) -> str:
    """The pip command of one of the project's extras, for how this copy was installed (`core.install`)."""
    return install.pip_extra(name)


@dataclass(frozen=True)
class Format:
    """One format (a row of `registry.FORMATS`)."""

    name: str  # the `format=` value (also a `formats=` value of the benchmark)
    title: str  # as the exporter prints it: "ONNX"
    runtime: str  # what runs its files, as the benchmark titles its rows: "ONNX Runtime"
    module: str  # yolonas_cli.formats.<module> implements it
    aliases: tuple[str, ...] = ()  # other spellings of `name`
    suffix: str = ""  # of the exported file, or of the folder when `folder`
    folder: bool = False  # the export is a folder
    opens: tuple[str, ...] = ()  # file suffixes recognised as this format (besides `suffix`)
    extra: str | None = None  # the project's pip extra for it
    export_needs: tuple[Requirement, ...] = ()  # what the export imports
    int8_needs: tuple[Requirement, ...] = ()  # what int8=True imports in addition
    runtime_needs: tuple[str, ...] = ()  # modules that run its files
    takes: frozenset[str] = frozenset()  # the optional export arguments it takes (see job.OPTIONAL_ARGS)
    needs_cuda: bool = False  # exports and runs only on an NVIDIA GPU
    exportable: bool = True  # False for the PyTorch weights themselves

    # --- files ----------------------------------------------------------------------------------------
    def output_for(self, weights: Path) -> Path:
        """Where the export of `weights` goes: beside it, named after its stem."""
        if self.folder:
            return weights.parent / f"{weights.stem}{self.suffix}"
        return weights.with_suffix(self.suffix)

    def recognizes(self, path: Path) -> bool:
        """True when `path` names a file (or folder) of this format (by name; a folder also by its content)."""
        if not self.exportable:
            return False
        if self.folder and (path.name.endswith(self.suffix) or (path.is_dir() and any(path.glob("*.xml")))):
            return True
        return path.suffix.lower() in ((() if self.folder else (self.suffix,)) + self.opens)

    # --- what must be installed -----------------------------------------------------------------------
    def check_installed(self, int8: bool = False) -> None:
        """MissingExtraError naming the first missing package of the export (checked before any work)."""
        for module, hint in self.export_needs + (self.int8_needs if int8 else ()):
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(
                    f"format={self.name}{' int8=True' if int8 else ''} needs {module}, which is not installed: {hint}"
                )
        check_version = getattr(self.implementation(), "check_version", None)
        if check_version is not None:
            check_version()

    def runtime_installed(self) -> bool:
        """True when everything needed to export and run this format can be imported here."""
        modules = [m for m, _ in self.export_needs] + list(self.runtime_needs)
        return all(importlib.util.find_spec(m) is not None for m in modules)

    # --- the implementation ---------------------------------------------------------------------------
    def implementation(self) -> ModuleType:
        """The module with this format's export and runtime (imported now; it imports its runtime lazily)."""
        return importlib.import_module(f"yolonas_cli.formats.{self.module}")

    def export(self, job: ExportJob) -> Path:
        """Write the export of `job` (atomically) and return its path."""
        return self.implementation().export(job)

    def open_backend(self, path: Path, device: Any) -> Backend:
        """The runtime backend of an exported file, on `device` (a torch.device)."""
        return self.implementation().open_backend(path, device)

    def read_metadata(self, path: Path) -> ExportMetadata:
        """The metadata an exported file carries, read without building a runtime session where possible."""
        return self.implementation().read_metadata(path)
