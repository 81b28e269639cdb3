"""KFP component: distill."""
