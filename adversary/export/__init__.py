"""Hard-negative training data from runs (`adversary export`): SFT, DPO and CantTalkAboutThis formats."""

from adversary.export.formats import FORMATS
from adversary.export.runner import ExportConfig, Exporter, ExportResult, check_sources, load_negatives

__all__ = ["FORMATS", "ExportConfig", "ExportResult", "Exporter", "check_sources", "load_negatives"]
