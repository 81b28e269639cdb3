"""KFP component: nas_search."""
