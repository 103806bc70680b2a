"""The nf2vec jobs: ``interpolate``, ``generate`` and ``complete``; library shapes (or a staged mesh) in,
new library shapes out.

Each kind has an ``..._inputs`` method, called by the API before the job is queued, that checks what can
be checked at once (the model and its task network are there, the shapes exist and are of the model's
family, the class is one the generator makes), resolves the decoder (``latent`` or ``implicit``; none
asked: the model's default) and returns the inputs stored with the job::

    interpolate  {"a": id, "b": id, "times": [t, ...], "space": "embedding" | "weights", "decoder": d}
    generate     {"count": n, "seed": s, "class": name or null, "truncation": x or null, "decoder": d}
    complete     {"shape": id, "decoder": d} or {"upload": id, "decoder": d}

The runner does the work (:mod:`backend.nf2vec.ops.operations`; the implicit decoder with the service's decode
settings) and stores the results when the operation is done; outputs are ``{"shapes": [id, ...]}`` in the
order of the results (the order of ``times`` for an interpolation). Latent results are stored as they
come: no mesh is made for them. Completing an upload first fits the mesh as an ordinary shape of the
model's family (with the decode settings' fit), stores it (``outputs.fitted``), completes it (the latent
decoder from the uploaded mesh's own surface) and removes the upload.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.batched import FitProgress
from backend.fitting.pipeline import fit_and_evaluate
from backend.meshes.loading import NormalisedMesh
from backend.nf2vec.decoding import OperationProgress
from backend.nf2vec.ops.interpolation import in_between_times
from backend.nf2vec.ops.operations import complete, generate, generation_classes, interpolate
from backend.service.errors import Unprocessable
from backend.service.services.job_queue import JobContext, JobKind
from backend.service.services.library import Library
from backend.service.services.nf2vec_queries import Nf2vec
from backend.service.services.uploads import Uploads
from backend.shapes.shape_file import NeuralShape

UPLOAD_FIT_SHARE = 0.4  # of a complete job's progress, when it starts from an uploaded mesh


@dataclass(frozen=True)
class Nf2vecJobs:
    """The nf2vec job runners, bound to the model, the library and the staged uploads."""

    nf2vec: Nf2vec
    library: Library
    uploads: Uploads
    compute: threading.BoundedSemaphore  # shared with mesh / render requests

    def kinds(self) -> list[JobKind]:
        return [
            JobKind(name="interpolate", run=self.run_interpolate),
            JobKind(name="generate", run=self.run_generate),
            JobKind(
                name="complete",
                run=self.run_complete,
                uploads=lambda inputs: [inputs["upload"]] if inputs.get("upload") else [],
            ),
        ]

    # --- checks before a job is queued ----------------------------------------------------------

    def interpolate_inputs(
        self, *, a: str, b: str, times: list[float] | None, count: int | None, space: str, decoder: str | None = None
    ) -> dict:
        """Inputs of an interpolation: ``times``, or ``count`` evenly spaced in-betweens."""
        decoder = self.nf2vec.decoder("interpolate", decoder)
        for shape_id in (a, b):
            self.nf2vec.shape(shape_id)
        times = list(times) if times is not None else in_between_times(count)
        return {"a": a, "b": b, "times": times, "space": space, "decoder": decoder}

    def generate_inputs(
        self,
        *,
        count: int,
        seed: int,
        class_name: str | None,
        truncation: float | None = None,
        decoder: str | None = None,
    ) -> dict:
        decoder = self.nf2vec.decoder("generate", decoder)
        if class_name is not None:
            classes = generation_classes(self.nf2vec.tools(), decoder)
            if class_name not in classes:
                made = f"it makes {', '.join(classes)}" if classes else "it is unconditional"
                raise Unprocessable(f"the generator cannot make class '{class_name}': {made}")
        return {"count": count, "seed": seed, "class": class_name, "truncation": truncation, "decoder": decoder}

    def complete_inputs(self, *, shape: str | None, upload: str | None, decoder: str | None = None) -> dict:
        decoder = self.nf2vec.decoder("complete", decoder)
        if shape is not None:
            self.nf2vec.shape(shape)
            return {"shape": shape, "decoder": decoder}
        self.uploads.get(upload)
        return {"upload": upload, "decoder": decoder}

    # --- runners -----------------------------------------------------------------------------------

    def run_interpolate(self, context: JobContext) -> dict:
        inputs = context.inputs
        a, b = self.nf2vec.shape(inputs["a"]), self.nf2vec.shape(inputs["b"])
        return self._make(context, "interpolate", interpolate, a, b, inputs["times"], inputs["space"])

    def run_generate(self, context: JobContext) -> dict:
        inputs = context.inputs
        options = inputs["count"], inputs["seed"], inputs["class"], inputs.get("truncation")
        return self._make(context, "generate", generate, *options)

    def _make(self, context: JobContext, name: str, operation, *arguments) -> dict:
        """Store the shapes ``operation(tools, *arguments, decoder, decode settings, progress, cancel)`` makes,
        with the job's decoder for the operation ``name``."""
        tools = self.nf2vec.tools()
        decoder = self._decoder(context.inputs, name)
        shapes = operation(tools, *arguments, decoder, self.nf2vec.decode, context.progress, context.cancel)
        self._store(context, shapes)
        return {}

    def run_complete(self, context: JobContext) -> dict:
        inputs = context.inputs
        decoder = self._decoder(inputs, "complete")
        progress: OperationProgress = context.progress
        surface = None
        if inputs.get("upload"):
            partial, mesh = self._fit_upload(context, inputs["upload"])
            surface = mesh.trimesh()

            def progress(fraction: float, stage: str) -> None:
                context.progress(UPLOAD_FIT_SHARE + (1 - UPLOAD_FIT_SHARE) * fraction, stage)
        else:
            partial = self.nf2vec.shape(inputs["shape"])
        completed = complete(
            self.nf2vec.tools(), partial, surface, decoder, self.nf2vec.decode, progress, context.cancel
        )
        self._store(context, [completed])
        if inputs.get("upload"):
            try:
                self.uploads.delete(inputs["upload"])
            except NeuralShapesError:
                pass  # removed meanwhile
        return {}

    def _decoder(self, inputs: dict, operation: str) -> str:
        """The job's decoder, checked again (the model folder may have changed since it was queued); jobs
        queued before decoders were recorded take the default."""
        return self.nf2vec.decoder(operation, inputs.get("decoder"))

    def _fit_upload(self, context: JobContext, upload_id: str) -> tuple[NeuralShape, NormalisedMesh]:
        """Fit the staged mesh with the model's family and store it (``outputs.fitted``): the partial shape and its mesh."""
        tools, settings = self.nf2vec.tools(), self.nf2vec.decode
        mesh = self.uploads.load(upload_id)
        context.progress(0.0, f"fitting '{mesh.name}'")

        def on_fit(event: FitProgress) -> None:
            if event.stage == "fitting":
                context.progress(
                    UPLOAD_FIT_SHARE * min(event.step / settings.fit.max_steps, 1.0),
                    f"fitting '{mesh.name}': step {event.step}",
                )

        def on_evaluating(_: int) -> None:
            context.progress(UPLOAD_FIT_SHARE, f"evaluating and storing '{mesh.name}'")

        [fit] = fit_and_evaluate(
            tools.family,
            [mesh],
            settings.fit,
            resolution=settings.evaluation_resolution,
            progress=on_fit,
            evaluating=on_evaluating,
            cancel=context.cancel,
            compute_slot=self.compute,
        )
        if fit.error is not None:
            raise fit.error
        context.add_output("fitted", self.library.add(fit.shape, job_id=context.job_id)["id"])
        return fit.shape, mesh

    def _store(self, context: JobContext, shapes: list[NeuralShape]) -> None:
        check_cancel(context.cancel, "job cancelled")
        for shape in shapes:
            context.add_output("shapes", self.library.add(shape, job_id=context.job_id)["id"])
