"""KFP v2 components, one folder per pipeline step; each body calls one damo_core.steps function."""
