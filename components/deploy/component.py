from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def deploy(exported: Input[Model], repository: str, url: str, variant: str,
           deployment: Output[Artifact]):
    """Add the exported model to a Triton model repository as a new version and load it,
    rolling back to the previous version if it fails to load or to answer.

    Args:
        repository: model repository directory the server reads ('' = this step's output).
        url: Triton gRPC HOST:PORT ('' = only write the repository).
        variant: native (official Triton image) or python (the CPU server of nvidia-pytriton).
    """
    from damo_core.steps.deploy import run

    deployment.metadata.update(run(exported.path, repository or deployment.path, url,
                                   variant=variant, metadata=dict(exported.metadata)))
