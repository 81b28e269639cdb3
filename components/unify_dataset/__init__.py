"""KFP component: unify_dataset."""
