"""The ``fit`` job: staged uploads in, neural shapes in the library out.

Inputs (validated by the API's ``FitJobCreate`` before they are stored)::

    {"uploads": [id, ...], "settings": {FitSettings fields}, "architecture": {hidden_layers, width,
     activation}, "family": "default", "resolution": 128, "half_precision": false, "keep_uploads": false,
     "quality": "standard"}

Meshes are fitted ``fit_batch`` at a time in one batched model (:func:`backend.fitting.pipeline.fit_and_escalate`:
with ``quality`` "high", the shapes the default net cannot hold are fitted again with larger nets);
each fitted shape is evaluated (surface error, Chamfer, F-score at ``resolution``) and stored at once,
so a crash later in the job keeps it. Outputs: ``{"shapes": [id, ...], "failed": [{"upload", "error"}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.batched import FitProgress, FitSettings
from backend.fitting.pipeline import Quality, fit_and_escalate
from backend.service.errors import DiskFull, Unprocessable
from backend.service.services.compute import ComputeQueue
from backend.service.services.job_queue import JobContext, JobKind
from backend.service.services.library import Library
from backend.service.services.uploads import Uploads
from backend.shapes.architecture import Architecture
from backend.shapes.family_file import resolve_family

SAMPLING_SHARE = 0.15  # of one mesh's progress
FITTING_SHARE = 0.7  # the rest is evaluation and storing
# Memory bounds of one batched fit (float32 values held at once, gradients come on top):
MAX_FIT_ACTIVATIONS = 2**28  # batch_size x width x hidden_layers x meshes fitted together (1 GiB)
MAX_FIT_SAMPLES = 2**26  # samples x meshes fitted together (importance samples, 4 values each: 1 GiB)


@dataclass(frozen=True)
class FitJob:
    """The fit runner bound to the library and uploads it reads and writes."""

    library: Library
    uploads: Uploads
    compute: ComputeQueue  # shared with mesh / render requests
    fit_batch: int = 16

    def kind(self) -> JobKind:
        return JobKind(name="fit", run=self.run)

    def run(self, context: JobContext) -> dict:
        inputs = context.inputs
        upload_ids: list[str] = list(inputs["uploads"])
        settings = FitSettings(**inputs.get("settings", {}))
        arch = inputs.get("architecture", {})
        architecture = Architecture.for_activation(
            arch.get("activation", "relu"), arch.get("hidden_layers", 8), arch.get("width", 32)
        )
        family = resolve_family(inputs.get("family", "default"), architecture)
        resolution = int(inputs.get("resolution", 128))
        half = bool(inputs.get("half_precision", False))
        quality = Quality(inputs.get("quality", Quality.STANDARD))

        count = len(upload_ids)
        mesh_progress = [0.0] * count

        def report(stage: str) -> None:
            context.progress(sum(mesh_progress) / count, stage)

        context.progress(0.0, f"loading {count} mesh{'es' if count > 1 else ''}")
        for start in range(0, count, self.fit_batch):
            group = upload_ids[start : start + self.fit_batch]
            meshes = []
            for upload_id in group:
                check_cancel(context.cancel, "job cancelled")
                meshes.append(self.uploads.load(upload_id))

            def on_progress(event: FitProgress, start: int = start, group: list[str] = group) -> None:
                index = start + event.shape_index
                if event.stage == "sampling":
                    for earlier in range(start, index):
                        mesh_progress[earlier] = SAMPLING_SHARE
                    report(f"sampling mesh {index + 1}/{count}")
                    return
                fraction = SAMPLING_SHARE + FITTING_SHARE * min(event.step / settings.max_steps, 1.0)
                if event.stage == "done":
                    fraction = SAMPLING_SHARE + FITTING_SHARE
                mesh_progress[index] = fraction
                report(
                    f"fitting meshes {start + 1}-{start + len(group)} of {count}: step {event.step}, surface error {event.surface_error:.4f}"
                )

            def on_evaluating(offset: int, start: int = start) -> None:
                report(f"evaluating and storing {start + offset + 1}/{count}")

            fits = fit_and_escalate(
                family,
                meshes,
                settings,
                escalation=quality.escalation,
                resolution=resolution,
                progress=on_progress,
                evaluating=on_evaluating,
                cancel=context.cancel,
                compute_slot=self.compute,
            )
            for fit in fits:
                upload_id = group[fit.index]
                mesh_progress[start + fit.index] = 1.0  # stored or failed: either way done
                try:
                    if fit.error is not None:
                        raise fit.error  # its evaluation failed: recorded like a failed store
                    record = self.library.add(fit.shape, job_id=context.job_id, half_precision=half)
                except DiskFull:
                    raise  # every later shape would fail the same way: the job ends, with what is stored so far
                except (NeuralShapesError, ValueError) as error:
                    context.add_output("failed", {"upload": upload_id, "error": str(error)})
                    continue
                context.add_output("shapes", record["id"])
        shapes = context.outputs.get("shapes", [])
        if not shapes:
            reasons = "; ".join(entry["error"] for entry in context.outputs.get("failed", []))
            raise NeuralShapesError(f"no shape could be made: {reasons}")
        if not inputs.get("keep_uploads", False):
            for upload_id in upload_ids:
                try:
                    self.uploads.delete(upload_id)
                except NeuralShapesError:
                    pass
        return {}


def check_fit_cost(
    *, meshes: int, fit_batch: int, batch_size: int, width: int, hidden_layers: int, samples: int
) -> None:
    """Refuse (:class:`Unprocessable`, 422) a fit whose memory passes ``MAX_FIT_ACTIVATIONS`` or
    ``MAX_FIT_SAMPLES``; ``fit_batch`` meshes at most are fitted together."""
    together = min(meshes, fit_batch)
    activations = batch_size * width * hidden_layers * together
    if activations > MAX_FIT_ACTIVATIONS:
        raise Unprocessable(
            f"settings.batch_size x architecture.width x architecture.hidden_layers x meshes fitted together ({together}) = "
            f"{activations:,} is over the limit of {MAX_FIT_ACTIVATIONS:,}: use a smaller batch or network, or fewer meshes per job"
        )
    if samples * together > MAX_FIT_SAMPLES:
        raise Unprocessable(
            f"settings.samples x meshes fitted together ({together}) = {samples * together:,} is over the limit of {MAX_FIT_SAMPLES:,}"
        )
