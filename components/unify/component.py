from kfp import dsl
from kfp.dsl import Dataset, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def unify(source: str, label_space: str, num_classes: int, num_images: int, image_size: int,
          seed: int, dataset: Output[Dataset]) -> int:
    """The training data as one manifest directory (Parquet manifests, label space, sampling
    weights, counts and plots; images stay where the sources keep them).

    Args:
        source: "synthetic" (the bundled generator), the path of a dataset.yaml or
            ultralytics data.yaml, or several NAME[:FORMAT]=URI sources separated by ";"
            (unified over label_space).
        label_space: mapping CSV (path or s3://) or preset:NAME, for several sources; empty
            proposes one from the class names.
        num_classes, num_images, image_size, seed: synthetic-set settings (seed also splits
            unified sources into train and val).
    Returns:
        The number of classes.
    """
    from damo_core.steps.unify import run

    meta = run(source.split(";"), dataset.path, label_space=label_space,
               num_classes=num_classes, num_images=num_images, image_size=image_size,
               seed=seed)
    dataset.metadata.update(meta)
    return meta["num_classes"]
