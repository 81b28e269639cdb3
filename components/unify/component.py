from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def unify(sources: list, label_space: str, sampling: dict, num_classes: int, num_images: int,
          image_size: int, seed: int, object_scale: str, dataset: Output[Dataset],
          counts: Output[Metrics], summary: Output[Markdown]) -> int:
    """The training data as one manifest directory (Parquet manifests, label space, sampling
    weights, counts and plots; images stay where the sources keep them).

    Args:
        sources: ["synthetic"] (the bundled generator), [a dataset.yaml or ultralytics
            data.yaml], or NAME[:FORMAT]=URI[,classes=URI][,split=train|val] sources unified
            over label_space.
        label_space: a preset name (coco-o365-oi), a mapping CSV (path or s3://), or empty to
            propose one from the class names (collisions reported on the page).
        sampling: enabled, alpha, class_aware, rfs_threshold, val_fraction (see
            damo_core.data.sampling.SamplingSettings).
        num_classes, num_images, image_size, seed: synthetic-set settings (seed also splits
            sources that bring no split of their own).
        object_scale: the synthetic set's object sizes, coco (COCO's small/medium/large
            spread) or coarse (object areas drawn between 3 % and 26 % of the image).
    Returns:
        The number of classes.
    """
    from damo_core.steps.unify import run

    meta = run(sources, dataset.path, label_space=label_space, num_classes=num_classes,
               num_images=num_images, image_size=image_size, seed=seed,
               object_scale=object_scale, sampling=sampling,
               report_md=summary.path)
    dataset.metadata.update(meta)
    for name, counted in meta["sources"].items():
        counts.log_metric(f"{name}_images", counted["images"])
        counts.log_metric(f"{name}_boxes", counted["boxes"])
    counts.log_metric("collisions", len(meta["collisions"]))
    return meta["num_classes"]
