"""KFP component: benchmark (a shell over damo_core.steps.benchmark.run)."""
