"""KFP v2 components, one folder per pipeline step and named as the step; each body calls its
step's one entry, damo_core.steps.<step>.run."""
