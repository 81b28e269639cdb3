"""KFP component: distill (a shell over damo_core.steps.distill.run)."""
