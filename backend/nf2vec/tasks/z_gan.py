"""A class-conditional GAN on the latents z of a latent family ``w(z) = theta + z B``: Generate's sampler.

The GAN is :mod:`backend.nf2vec.tasks.latent_gan`'s WGAN-GP (noise + one-hot class -> z), trained on the latent
family's training latents and their classes, with z standardised by the family's overall prior (mean,
std), so one learning rate suits any k and scale. Its :func:`z_gan_sampler` is a
:data:`backend.nf2vec.ops.latent_ops.ZSampler`: truncation t in [0, 1] pulls each generated z towards its
class's prior mean, ``z = m_c + t (G(noise, c) - m_c)`` (StyleGAN's truncation with the class mean as the
centre), so t = 0 gives the class's typical latent, as the prior sampler does, and t = 1 the GAN's own spread.

The file ``z_gan.safetensors`` (docs/format.md) sits in the model folder next to ``latent.safetensors`` and
names the latent family it was trained for by :func:`backend.nf2vec.latent_encoder.latent_digest`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from backend.datasets.procedural import read_manifest
from backend.errors import NeuralShapesError
from backend.nf2vec.latent import LatentFamily
from backend.nf2vec.latent_encoder import latent_digest
from backend.nf2vec.ops.latent_ops import ZSampler
from backend.nf2vec.resumable import read_versioned, write_versioned
from backend.nf2vec.tasks.downstream import Standardiser, TaskProgress
from backend.nf2vec.tasks.latent_gan import LatentGan, LatentGanSettings, generator_network, train_latent_gan

FORMAT = "neural-shapes/nf2vec-z-gan"
VERSION = 1
Z_GAN_NAME = "z_gan.safetensors"
CHECKPOINT_NAME = "z-gan-checkpoint.safetensors"
# The latent GAN's sizes and 2000 generator steps at 1e-3 (its module docstring), on standardised z.
Z_GAN_SETTINGS = LatentGanSettings()


@dataclass
class ZGan:
    """A GAN generating z of one latent family (see the module docstring)."""

    gan: LatentGan  # over z standardised by the latent family's overall prior; conditional when it has classes
    centres: (
        torch.Tensor
    )  # (c, k) float32: each class's prior mean, where truncation 0 lands ((1, k) the overall mean without classes)
    latent_digest: str  # of the latent family it was trained for

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.gan.class_names


def training_labels(latent: LatentFamily, collection: Path | None = None) -> np.ndarray | None:
    """Class rows (n,) int64 into the prior's class names of the latent family's training latents.

    From the latent file when it keeps them; else, with ``collection``, from its manifest, matching each
    training shape's name to a mesh file stem (the names ``fit-collection`` gives). None without classes.
    """
    if not latent.prior.class_names:
        return None
    if latent.labels is not None:
        return latent.labels.numpy()
    if collection is None:
        raise NeuralShapesError(
            "the latent family keeps no class of each training shape; pass the collection whose manifest has them"
        )
    class_of = {Path(item.file).stem: item.class_name for item in read_manifest(collection).items}
    missing = [name for name in latent.names if class_of.get(name) not in latent.prior.class_names]
    if missing:
        raise NeuralShapesError(
            f"training shape '{missing[0]}' has no class of the latent family in {collection} ({len(missing)} such)"
        )
    return np.array([latent.prior.class_names.index(class_of[name]) for name in latent.names], dtype=np.int64)


def train_z_gan(
    latent: LatentFamily,
    output: Path,
    labels: np.ndarray | None = None,
    settings: LatentGanSettings = Z_GAN_SETTINGS,
    progress: Callable[[TaskProgress], None] | None = None,
    cancel: threading.Event | None = None,
    checkpoint_every: int = 250,
) -> ZGan:
    """Train a GAN on the latent family's training latents and write ``output/z_gan.safetensors``.

    labels (n,) int64 rows of the prior's class names (:func:`training_labels`); None for a family
    without classes (the GAN is then unconditional). Resumes ``output/z-gan-checkpoint.safetensors`` when
    it is of the same latents and settings (saved every ``checkpoint_every`` generator steps); ``cancel``
    stops with :class:`backend.errors.Cancelled`.
    """
    if latent.latents is None:
        raise NeuralShapesError("the latent family keeps no training latents to train a GAN on")
    prior = latent.prior
    if (labels is None) != (not prior.class_names):
        raise NeuralShapesError("the training latents need one class each exactly when the latent family has classes")
    standardiser = Standardiser(latent.k)
    standardiser.mean.copy_(prior.mean)
    standardiser.scale.copy_(prior.std)
    output.mkdir(parents=True, exist_ok=True)
    gan = train_latent_gan(
        latent.latents.numpy(),
        labels,
        list(prior.class_names) if prior.class_names else None,
        settings,
        progress,
        cancel,
        standardiser,
        output / CHECKPOINT_NAME,
        checkpoint_every,
    )
    z_gan = ZGan(gan, _centres(latent), latent_digest(latent))
    save_z_gan(output, z_gan)
    return z_gan


def z_gan_sampler(z_gan: ZGan) -> ZSampler:
    """The GAN's :data:`ZSampler`: ``count`` z (count, k) float32 of a class (None: classes drawn uniformly),
    truncation in [0, 1] towards the class's prior mean; the same generator state gives the same z."""
    gan = z_gan.gan

    def sample(count: int, generator: torch.Generator, class_name: str | None, truncation: float) -> np.ndarray:
        if class_name is None:
            labels = torch.randint(max(1, len(gan.class_names)), (count,), generator=generator)
        else:
            labels = torch.full((count,), gan.label_of(class_name))
        made = gan.generate(torch.randn(count, gan.settings.noise_size, generator=generator), labels)
        centre = z_gan.centres[labels]
        return (centre + truncation * (made - centre)).numpy().astype(np.float32)

    return sample


def _centres(latent: LatentFamily) -> torch.Tensor:
    prior = latent.prior
    return (prior.class_mean if prior.class_mean is not None else prior.mean[None]).clone()


# --- the file --------------------------------------------------------------------------------------


def save_z_gan(folder: Path, z_gan: ZGan) -> Path:
    """Write ``folder/z_gan.safetensors`` atomically (folder created); returns its path."""
    gan = z_gan.gan
    fields = {
        "latent_digest": z_gan.latent_digest,
        "k": gan.embedding_size,
        "class_names": list(gan.class_names),
        "settings": asdict(gan.settings),
        "centres": z_gan.centres,
        "standardiser": gan.standardiser.state_dict(),
        "generator": gan.generator.state_dict(),
        "training": gan.training,
    }
    return write_versioned(folder / Z_GAN_NAME, FORMAT, VERSION, fields)


def load_z_gan(folder: Path, latent: LatentFamily) -> ZGan:
    """Read ``folder/z_gan.safetensors`` for ``latent``: a missing, corrupt or foreign file, one trained for
    another latent family, or weights that do not fit, is a one-line :class:`NeuralShapesError` naming the file."""
    path = Path(folder) / Z_GAN_NAME
    data = read_versioned(path, "z GAN", FORMAT, VERSION)
    if data.get("latent_digest") != latent_digest(latent):
        raise NeuralShapesError(
            f"{path}: trained for another latent family than {Path(folder) / 'latent.safetensors'}; retrain it"
        )
    try:
        settings, k = LatentGanSettings(**data["settings"]), int(data["k"])
        class_names = tuple(str(name) for name in data["class_names"])
        if k != latent.k or list(class_names) != list(latent.prior.class_names):
            raise ValueError("k or classes differ from the latent family's")
        centres = data["centres"]
        if not isinstance(centres, torch.Tensor) or tuple(centres.shape) != (max(1, len(class_names)), k):
            raise ValueError("class centres of the wrong shape")
        standardiser, generator = Standardiser(k), generator_network(settings, k, len(class_names))
        standardiser.load_state_dict(data["standardiser"])
        generator.load_state_dict(data["generator"])
        tensors = [centres, *standardiser.state_dict().values(), *generator.state_dict().values()]
        if not all(torch.isfinite(tensor).all() for tensor in tensors):
            raise ValueError("weights are not finite")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise NeuralShapesError(f"{path}: malformed z GAN ({type(error).__name__}: {error})".splitlines()[0]) from None
    generator.eval()
    gan = LatentGan(settings, class_names, standardiser, generator, dict(data.get("training") or {}))
    return ZGan(gan, centres.float(), str(data["latent_digest"]))
