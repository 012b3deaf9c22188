"""`featuremaps.report`: one self-contained, offline HTML page of a model's feature maps for one input.

`build_report(model, x, "report.html")` writes it; the CLI is `featuremaps report CHECKPOINT -o report.html`.
"""
from .build import WEIGHT_BUDGET, build_report, report_data, report_html

__all__ = ["build_report", "report_html", "report_data", "WEIGHT_BUDGET"]
