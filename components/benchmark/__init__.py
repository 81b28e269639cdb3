"""KFP component: benchmark."""
