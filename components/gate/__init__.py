"""KFP component: gate (a shell over damo_core.steps.gate.run)."""
