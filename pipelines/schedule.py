"""Recurring runs of the pipeline on a Kubeflow Pipelines API server: create, list, pause, delete.

A recurring run is the compiled DAG plus parameters plus a trigger, stored on the server; its
scheduler starts a run at every tick. The trigger is a cron expression or an interval, and both
are checked here before the pipeline is compiled or the server asked, so a typo costs nothing,
and because one cron form the server accepts means something else:

KFP parses cron with robfig/cron v1's ``cron.Parse``: six fields, *seconds first* (second minute
hour day-of-month month day-of-week), or a descriptor such as ``@daily``. That parser also takes
five fields, as the first five of those six (day-of-week left at ``*``), so a standard 5-field
crontab line such as ``0 3 * * *`` (03:00 daily) would run at minute 3 of every hour. Five
fields are therefore refused with the 6-field spelling to use instead.

Catch-up is off by default (``no_catchup``): a paused schedule that is enabled again, or a
scheduler that was down, starts one run for the latest missed tick, not one per missed tick
(each run trains four models). Concurrency defaults to 1 for the same reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from damo_core.cluster.pytorchjob import PIPELINE_SERVICE_ACCOUNT
from damo_core.errors import UserInputError
from pipelines.remote import (
    check_service_account,
    client,
    compiled_package,
    experiment_id_of,
    not_found_as,
    ui_url,
)

# (field, lowest, highest, names) in the order robfig/cron v1 reads them.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, start=1)}),
    ("day-of-week", 0, 6, {name: i for i, name in enumerate(_DAYS)}),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MAX_CONCURRENCY = 10  # the API server refuses a recurring run's max_concurrency outside 1-10


class ScheduleError(UserInputError):
    """A trigger or setting the KFP scheduler would refuse or misread; names the value."""


class UnknownScheduleError(UserInputError):
    """The recurring run to enable, disable or delete does not exist on that server."""


def check_cron(expression: str) -> str:
    """``expression`` (whitespace normalised) if KFP's cron parser reads it as the user meant
    (see module doc); else a :class:`ScheduleError` naming the field and value."""
    spec = expression.strip()
    if spec.startswith("@"):
        if spec.startswith("@every"):
            raise ScheduleError(f"cron {expression!r}: for a fixed period use --interval "
                                "SECONDS instead of @every")
        if spec not in DESCRIPTORS:
            raise ScheduleError(f"cron {expression!r}: unknown descriptor; KFP takes "
                                f"{', '.join(DESCRIPTORS)}")
        return spec
    fields = spec.split()
    if len(fields) == 5:
        raise ScheduleError(
            f"cron {expression!r} has 5 fields, but KFP's cron starts with seconds (second "
            "minute hour day-of-month month day-of-week) and would read these as the first "
            f"five; write 6 fields, e.g. '0 {' '.join(fields)}'")
    if len(fields) != len(CRON_FIELDS):
        raise ScheduleError(f"cron {expression!r} has {len(fields)} fields; KFP's cron has 6: "
                            "second minute hour day-of-month month day-of-week, e.g. "
                            "'0 0 3 * * *' (03:00 daily)")
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS, strict=True):
        for part in text.split(","):
            _check_range(part, name, low, high, names, expression)
    return " ".join(fields)


def _check_range(part: str, field: str, low: int, high: int, names: dict[str, int],
                 expression: str) -> None:
    """One comma-separated piece of a cron field: ``*``, ``?``, ``N``, ``N-M``, each with an
    optional ``/STEP`` (``N/STEP`` runs from N to the field's end, as robfig/cron reads it)."""
    def bad(why: str) -> ScheduleError:
        return ScheduleError(f"cron {expression!r}: {field} {part!r} {why}")

    base, slash, step = part.partition("/")
    if slash and not (_whole(step) and int(step) > 0):
        raise bad("needs a step that is a whole number > 0 after '/'")
    if base in ("*", "?"):
        return
    ends = base.split("-")
    if len(ends) > 2 or not all(ends):
        raise bad("is not *, ?, N or N-M")
    values = []
    for end in ends:
        if end.lower() in names:
            values.append(names[end.lower()])
        elif _whole(end):
            values.append(int(end))
        else:
            raise bad(f"is not a number{' or a name' if names else ''}")
    start, stop = values[0], values[-1]
    if start < low or stop > high:
        raise bad(f"is outside {low}-{high}")
    if start > stop:
        raise bad("starts after it ends")


def _whole(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²', which ``int`` (and Go) refuse."""
    return text.isascii() and text.isdigit()


def check_interval(seconds: int) -> int:
    """A period in whole seconds > 0 (the scheduler's ``interval_second``)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ScheduleError(f"interval must be a whole number of seconds > 0, got {seconds!r}")
    return seconds


def check_trigger(cron: str | None, interval: int | None, max_concurrency: int = 1
                  ) -> tuple[str | None, int | None]:
    """Exactly one of ``cron`` and ``interval``, each as KFP will read it, and a concurrency
    the server accepts: all refused here, before the pipeline is compiled or a server asked."""
    if (cron is None) == (interval is None):
        raise ScheduleError("a schedule needs exactly one of --cron EXPRESSION and --interval "
                            f"SECONDS (got {'both' if cron is not None else 'neither'})")
    if not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise ScheduleError(f"max concurrency must be 1-{MAX_CONCURRENCY} (the API server's "
                            f"range), got {max_concurrency}")
    if cron is not None:
        return check_cron(cron), None
    return None, check_interval(interval)  # type: ignore[arg-type]


def trigger_text(cron: str | None, interval: int | None) -> str:
    return f"cron '{cron}'" if cron is not None else f"every {interval} s"


@dataclass(frozen=True)
class Schedule:
    """A recurring run as the server lists it (int64 fields arrive as JSON strings)."""

    recurring_run_id: str
    name: str
    status: str
    cron: str | None
    interval_s: int | None
    max_concurrency: int
    no_catchup: bool
    experiment_id: str | None
    created_at: datetime | None
    url: str = ""

    @property
    def trigger(self) -> str:
        return trigger_text(self.cron, self.interval_s)

    def as_dict(self) -> dict[str, Any]:
        return {"recurring_run_id": self.recurring_run_id, "name": self.name,
                "status": self.status, "cron": self.cron, "interval_s": self.interval_s,
                "max_concurrency": self.max_concurrency, "no_catchup": self.no_catchup,
                "experiment_id": self.experiment_id,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "url": self.url}


def _schedule(kfp_client: Any, job: Any) -> Schedule:
    trigger = job.trigger
    cron = trigger.cron_schedule.cron if trigger and trigger.cron_schedule else None
    period = trigger.periodic_schedule if trigger else None
    interval = int(period.interval_second) if period and period.interval_second else None
    return Schedule(job.recurring_run_id, job.display_name or "", job.status or "", cron,
                    interval, int(job.max_concurrency or 0), bool(job.no_catchup),
                    job.experiment_id, job.created_at,
                    ui_url(kfp_client, "recurringrun", job.recurring_run_id))


def create(host: str, params: dict[str, Any] | None = None, *, cron: str | None = None,
           interval: int | None = None, name: str = "damo-yolo",
           experiment: str | None = None, max_concurrency: int = 1, catchup: bool = False,
           token: str | None = None, namespace: str | None = None,
           params_source: str = "parameters",
           service_account: str = PIPELINE_SERVICE_ACCOUNT) -> Schedule:
    """Create an enabled recurring run of the compiled DAG with ``params`` in ``experiment``
    (created if missing): a run every ``cron`` tick or every ``interval`` seconds, at most
    ``max_concurrency`` at once, missed ticks caught up only with ``catchup``."""
    from kfp_server_api.exceptions import ApiException

    cron, interval = check_trigger(cron, interval, max_concurrency)
    check_service_account(service_account)
    params = params or {}
    with compiled_package(params, params_source) as package:
        kfp_client = client(host, token, namespace)
        exp = kfp_client.create_experiment(experiment or "damo-yolo", namespace=namespace)
        try:
            job = kfp_client.create_recurring_run(
                experiment_id=exp.experiment_id, job_name=name, cron_expression=cron,
                interval_second=interval, max_concurrency=max_concurrency,
                no_catchup=not catchup, params=params, pipeline_package_path=package,
                service_account=service_account)
        except ApiException as err:
            if err.status != 400:
                raise
            raise ScheduleError(f"{host} refused the recurring run (HTTP 400): "
                                f"{_api_message(err)}") from None
    return _schedule(kfp_client, job)


def _api_message(err: Any) -> str:
    """The server's own one-line reason from an error body (``message`` or ``error``)."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    text = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return " ".join(str(text or err.reason or "no reason given").split())


def list_schedules(host: str, *, experiment: str | None = None, token: str | None = None,
                   namespace: str | None = None) -> list[Schedule]:
    """Every recurring run on the server (of ``experiment`` if named), newest first."""
    kfp_client = client(host, token, namespace)
    experiment_id = experiment_id_of(kfp_client, experiment, host, namespace) \
        if experiment else None
    found: list[Schedule] = []
    page_token = ""
    while True:
        page = kfp_client.list_recurring_runs(
            page_token=page_token, page_size=100, sort_by="created_at desc",
            experiment_id=experiment_id, namespace=namespace)
        found += [_schedule(kfp_client, job) for job in page.recurring_runs or []]
        page_token = page.next_page_token or ""
        if not page_token:
            return found


def _unknown(recurring_run_id: str, host: str) -> UnknownScheduleError:
    return UnknownScheduleError(f"no recurring run {recurring_run_id!r} on {host} (HTTP 404); "
                                "`damo pipeline schedule --list` shows their ids")


def set_enabled(host: str, recurring_run_id: str, enabled: bool, *, token: str | None = None,
                namespace: str | None = None) -> None:
    """Resume or pause a recurring run; a paused one keeps its definition and starts nothing."""
    kfp_client = client(host, token, namespace)
    with not_found_as(_unknown(recurring_run_id, host)):
        if enabled:
            kfp_client.enable_recurring_run(recurring_run_id)
        else:
            kfp_client.disable_recurring_run(recurring_run_id)


def delete(host: str, recurring_run_id: str, *, token: str | None = None,
           namespace: str | None = None) -> None:
    """Delete a recurring run: it starts no more runs and leaves the listing."""
    kfp_client = client(host, token, namespace)
    with not_found_as(_unknown(recurring_run_id, host)):
        kfp_client.delete_recurring_run(recurring_run_id)
