"""KFP component: unify (a shell over damo_core.steps.unify.run)."""
