"""KFP component: export (a shell over damo_core.steps.export.run)."""
