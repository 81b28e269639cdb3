"""KFP component: report (a shell over damo_core.steps.report.run)."""
