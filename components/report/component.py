from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def report(eval_l: Input[Metrics], eval_m: Input[Metrics], eval_s: Input[Metrics],
           eval_t: Input[Metrics], bench_l: Input[Metrics], bench_m: Input[Metrics],
           bench_s: Input[Metrics], bench_t: Input[Metrics], control: Input[Model],
           chart: Output[Artifact], page: Output[HTML]):
    """Latency against mAP of every model (the paper's Figure 1 for this run): a PNG, and an
    HTML page embedding it that the KFP UI shows, for people without Grafana. The page also
    sets each teacher against its student, and the control (a student trained alone with the
    same settings, its AP from its training's validation) against its distilled twin.

    Args:
        control: the control training's model; its metadata holds its name, AP and AP50.
    """
    from damo_core.steps.report import run

    evals = [dict(a.metadata) for a in (eval_l, eval_m, eval_s, eval_t)]
    benches = [dict(a.metadata) for a in (bench_l, bench_m, bench_s, bench_t)]
    chart.metadata.update(run(evals, benches, chart.path, page.path,
                              control=dict(control.metadata)))
