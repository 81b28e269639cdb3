"""KFP component: deploy (a shell over damo_core.steps.deploy.run)."""
