"""Container images the components run in (built from docker/ by the cluster's CI).

One constant per image so a release bumps one line. The local runner ignores images and runs
the same component bodies in this Python environment.
"""

DAMO_IMAGE = "ghcr.io/damo-pipeline/damo-cpu:0.1.0"
DAMO_GPU_IMAGE = "ghcr.io/damo-pipeline/damo-gpu:0.1.0"
# Triton with this package (its preprocess/postprocess models import damo_core):
# manifests/base/triton.yaml runs it, `damo serve deploy` fills its repository.
DAMO_TRITON_IMAGE = "ghcr.io/damo-pipeline/damo-triton:0.1.0"
