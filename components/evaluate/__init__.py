"""KFP component: evaluate (a shell over damo_core.steps.evaluate.run)."""
