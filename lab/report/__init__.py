"""The cost report: an executive summary, charts, tables and a JSON of every number (`costlab report`)."""

from lab.report.report import Chart, Report, build_report, check_output_dir

__all__ = ["Chart", "Report", "build_report", "check_output_dir"]
