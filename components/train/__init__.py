"""KFP component: train (a shell over damo_core.steps.train.run)."""
