"""What the operators share: none waits for the service. Each hands its requests to one slot of
:mod:`..background.workers` (or starts a service job that :mod:`..background.tracked_jobs` follows), returns
at once, and is greyed out while that slot is busy; the outcome comes later, on a line of the panel.

The mixins go before ``bpy.types.Operator`` in an operator's bases (Blender takes ``poll`` and ``invoke``
from them as from the operator itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy

from ..background import tracked_jobs, workers
from ..client.client import Client
from ..errors import LocalError, report
from ..settings import connection_settings


class WorkerTask:
    """An operator whose requests run as one task in the workers' slot ``slot`` (one at a time)."""

    slot = ""  # each operator names its own

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not workers.busy(cls.slot)

    def start_task(
        self,
        work: Callable[[], Any],
        done: Callable[[Any], str],
        *,
        pending: str,
        title: str | None = None,
        **options: Any,
    ) -> set[str]:
        """:func:`..background.workers.start` in this operator's slot (``title``: the operator's label unless
        given); what ``execute`` returns, at once."""
        workers.start(self.slot, work, done, title=title or self.bl_label, pending=pending, **options)
        return {"FINISHED"}


class ServiceJob:
    """An operator that starts a service job followed by :mod:`..background.tracked_jobs` (one at a time)."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not tracked_jobs.busy()

    def start_job(
        self, context: bpy.types.Context, tracked: tracked_jobs.TrackedJob, submit: Callable[[Client], str]
    ) -> set[str]:
        """Hand ``tracked`` to :mod:`..background.tracked_jobs` (``submit`` runs on the worker); what ``execute``
        returns: an error report when a job runs already."""
        try:
            tracked_jobs.start(connection_settings(context), tracked, submit)
        except LocalError as error:
            return report(self, error)
        return {"FINISHED"}


class AsksFirst:
    """An operator whose properties are asked in a dialog before it runs."""

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)
