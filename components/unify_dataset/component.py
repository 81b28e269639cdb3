from kfp import dsl
from kfp.dsl import Dataset, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def unify_dataset(source: str, num_classes: int, num_images: int, image_size: int, seed: int,
                  dataset: Output[Dataset]) -> int:
    """Materialise the training data as one COCO-format dataset.

    Args:
        source: "synthetic" for the bundled generator, or the path of a dataset.yaml.
        num_classes, num_images, image_size, seed: synthetic-set settings.
    Returns:
        The number of classes.
    """
    from damo_core.steps import unify_dataset as step

    meta = step(source, dataset.path, num_classes=num_classes, num_images=num_images,
                image_size=image_size, seed=seed)
    dataset.metadata.update(meta)
    return meta["num_classes"]
