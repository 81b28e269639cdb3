"""KFP component: nas (a shell over damo_core.steps.nas.run)."""
