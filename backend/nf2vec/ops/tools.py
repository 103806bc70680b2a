"""An nf2vec model folder with everything its operations need, loaded once.

Folder layout::

    config.json, weights.safetensors   the encoder + implicit decoder (backend.nf2vec.model)
    family.h5                          the model family whose shapes it embeds (absent: a family the tool bundles)
    latent.safetensors                 the latent family w(z) = theta + z B (backend.nf2vec.latent; optional)
    latent_encoder.safetensors         the encoder distilled into z (backend.nf2vec.latent_encoder; optional)
    z_gan.safetensors                  a class-conditional GAN on z for the latent decoder's generate (optional)
    gan.safetensors                    latent GAN for the implicit decoder's generate (optional)
    classifier.safetensors             classifier for the implicit decoder's classify (optional)
    transfer.safetensors               partial -> complete transfer network for the implicit decoder's complete (optional)

Two decoders serve the operations (:mod:`backend.nf2vec.ops.operations`): ``latent`` (results are nets of the
latent family, no decode-mesh-refit; needs both latent files) and ``implicit`` (nf2vec's decoder, each
result decoded to a grid and fitted). The default is ``latent`` whenever the folder has both latent files,
so a folder with only the implicit model keeps working unchanged and switches once the files are added.

The bundled default (``DEFAULT_MODEL_DIR``) is trained on the procedural collection fitted with the
default family; ``scripts/train_default_nf2vec`` reproduces it. The task networks are loaded on first use,
so a folder without one still serves the others; asking for a missing one is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from backend.errors import NeuralShapesError
from backend.nf2vec.latent import LATENT_NAME, LatentFamily, load_latent
from backend.nf2vec.latent_encoder import ENCODER_NAME, LatentEncoder, load_latent_encoder
from backend.nf2vec.model import Nf2vecModel, load_model, read_folder_family
from backend.shapes.architecture import ModelFamily

if TYPE_CHECKING:
    from backend.nf2vec.ops.latent_ops import ZSampler

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "default"
Nf2vecDecoder = Literal["latent", "implicit"]
DECODERS: tuple[Nf2vecDecoder, ...] = ("latent", "implicit")


@dataclass
class Nf2vecTools:
    """A loaded model folder: the model, its family, the latent family and its encoder when the folder has
    both (else None), and its task networks as they are first needed."""

    folder: Path
    model: Nf2vecModel
    family: ModelFamily
    latent: LatentFamily | None = None
    latent_encoder: LatentEncoder | None = None
    _tasks: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def default_decoder(self) -> Nf2vecDecoder:
        """``latent`` when the folder has the latent family and its encoder, else ``implicit``."""
        return "latent" if self.latent is not None else "implicit"

    def decoder(self, choice: str | None = None) -> Nf2vecDecoder:
        """The decoder to use for ``choice`` (None: the default); a one-line error for an unknown name or
        for ``latent`` when the folder lacks its files."""
        if choice is None:
            return self.default_decoder
        if choice not in DECODERS:
            raise NeuralShapesError(f"decoder must be 'latent' or 'implicit', got '{choice}'")
        if choice == "latent" and self.latent is None:
            missing = [name for name in (LATENT_NAME, ENCODER_NAME) if not (self.folder / name).is_file()]
            raise NeuralShapesError(
                f"the latent decoder needs {' and '.join(missing)} in the nf2vec model folder {self.folder}"
            )
        return choice

    def z_sampler(self) -> ZSampler:
        """Generate's sampler of latents (:func:`model_z_sampler`), made once."""
        if "z_sampler" not in self._tasks:
            self._tasks["z_sampler"] = model_z_sampler(self.folder, self.require_latent())
        return self._tasks["z_sampler"]

    def require_latent(self) -> LatentFamily:
        """The latent family; a one-line error naming the missing files when the folder has none."""
        self.decoder("latent")
        assert self.latent is not None
        return self.latent

    def task(self, name: str, loader) -> Any:
        """The task network ``name`` (gan, classifier, transfer), read by ``loader(folder, model)`` once."""
        if name not in self._tasks:
            self._tasks[name] = loader(self.folder, self.model)
        return self._tasks[name]


def model_z_sampler(folder: Path, latent: LatentFamily) -> ZSampler:
    """Generate's sampler of latents for a model folder: the class-conditional GAN on z when the folder has
    one (``train-z-gan``), else blends of two training latents of the class when the latent family keeps
    them with their classes, else its class-conditional Gaussian prior.

    The bundled model ships no GAN. Measured on it (30 per class against the 330 held-out reals, truncation
    1): blends scored 1-NNA 81%, coverage 43%, MMD 1.11x the reals', the prior 78% / 52% / 1.38x (the GAN,
    on a preview model: 87% / 46% / 1.36x); rendered, the prior's chairs, tables, lamps and airplanes are
    scattered fragments, blends are recognisable (README, nf2vec).
    """
    # Imported here: latent_ops imports interpolation, which imports this module.
    from backend.nf2vec.ops.latent_ops import blend_sampler, prior_sampler
    from backend.nf2vec.tasks.z_gan import Z_GAN_NAME, load_z_gan, z_gan_sampler

    if (folder / Z_GAN_NAME).is_file():
        return z_gan_sampler(load_z_gan(folder, latent))
    if latent.latents is not None and latent.labels is not None and latent.prior.class_names:
        return blend_sampler(latent)
    return prior_sampler(latent.prior)


def load_tools(spec: str | Path | None = None) -> Nf2vecTools:
    """``None`` or ``"default"``: the bundled model; otherwise a model folder path.

    The latent family and its encoder are read when both files are there (a corrupt or mismatched one is a
    one-line error naming it); with one or neither, only the implicit decoder serves.
    """
    folder = DEFAULT_MODEL_DIR if spec in (None, "default") else Path(spec)
    model = load_model(folder)
    family = read_folder_family(folder, model.family_id)
    latent = encoder = None
    if (folder / LATENT_NAME).is_file() and (folder / ENCODER_NAME).is_file():
        latent = load_latent(folder, family.family_id)
        encoder = load_latent_encoder(folder, latent)
    return Nf2vecTools(folder, model, family, latent, encoder)
