from kfp import dsl
from kfp.dsl import Input, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def export(model: Input[Model], fmt: str, exported: Output[Model], dynamic_batch: bool = False):
    """Reparameterise (fuse RepConv and BatchNorm) and export for deployment.

    Args:
        fmt: onnx, openvino (CPU) or tensorrt (needs the GPU image and a GPU node).
        dynamic_batch: any batch size (Triton's native variant then batches requests).
    """
    from damo_core.steps.export import run

    exported.metadata.update(run(model.path, exported.path, fmt=fmt,
                                 dynamic_batch=dynamic_batch))
