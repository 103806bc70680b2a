"""A latent GAN on nf2vec embeddings: a generator from Gaussian noise to embeddings that the nf2vec
decoder turns into shapes, trained against a critic (Achlioptas et al.'s Latent-GAN, as inr2vec /
nf2vec use it for shape generation).

Sizes (inr2vec appendix): the generator maps 128 noise values through one hidden layer of 128 to the
embedding (ReLU between, no activation at the end); the critic maps an embedding through hidden layers
of 256 and 512 to one score. Objective: Wasserstein with gradient penalty (Gulrajani et al.), weight
10, five critic steps per generator step, Adam with betas (0.5, 0.9). The paper's critic ends in a
sigmoid; a Wasserstein critic must not (its score is unbounded), so ours ends linear, and it has no
batch norm, which the per-sample gradient penalty rules out.

The paper trains 2000 epochs at learning rate 1e-4. Our default is 2000 generator steps (about 130
epochs of 1000 embeddings, 1-2 minutes on a 2-core CPU) at 1e-3: on 1000 clustered 256-value embeddings
that put samples as near the data as the data's own nearest neighbours, each nearest its own class,
where 1e-4 left them 60% farther and 29% nearest another class.

Optional class conditioning: the one-hot class is concatenated to the noise and to the critic's input,
so a trained GAN can make "a chair". Embeddings are standardised (:class:`Standardiser`) for training;
samples are returned in embedding units. The same GAN generates latent-family latents z
(:mod:`backend.nf2vec.tasks.z_gan`), which is why training can resume from a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import NeuralShapesError, check_cancel
from backend.nf2vec.model import Nf2vecModel
from backend.nf2vec.tasks.downstream import (
    Standardiser,
    TaskProgress,
    as_embeddings,
    as_labels,
    mlp,
    report_every,
)
from backend.nf2vec.tasks.task_file import load_classes_task, save_task_file
from backend.shapes.checkpoints import load_tensors, save_tensors

TASK = "gan"


@dataclass(frozen=True)
class LatentGanSettings:
    """Sizes and training of a latent GAN (defaults: the paper's sizes; see the module docstring)."""

    noise_size: int = 128
    generator_hidden: tuple[int, ...] = (128,)
    critic_hidden: tuple[int, ...] = (256, 512)
    steps: int = 2000  # generator steps
    critic_steps: int = 5  # critic updates per generator update
    batch_size: int = 64
    gradient_penalty: float = 10.0
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = (
            self.noise_size,
            *self.generator_hidden,
            *self.critic_hidden,
            self.steps,
            self.critic_steps,
            self.batch_size,
        )
        if min(sizes) < 1 or not self.gradient_penalty >= 0 or not self.learning_rate > 0:
            raise ValueError(f"latent GAN sizes and steps must be positive, the learning rate too, got {self}")


@dataclass
class LatentGan:
    """A trained generator of embeddings; unconditional when ``class_names`` is empty."""

    settings: LatentGanSettings
    class_names: tuple[str, ...]
    standardiser: Standardiser
    generator: torch.nn.Module  # (noise_size + classes) -> standardised embedding
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, final critic / generator figures

    @property
    def embedding_size(self) -> int:
        return self.standardiser.mean.shape[0]

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "standardiser": self.standardiser}

    def sample(self, count: int, seed: int, class_name: str | None = None, truncation: float = 1.0) -> np.ndarray:
        """``count`` generated embeddings (count, embedding_size) float32, the same for the same seed.

        A conditional GAN makes ``class_name``, or classes drawn uniformly when it is None; an
        unconditional one refuses a class name. ``truncation`` in [0, 1] scales the noise (the truncation
        trick): 0 gives the generator's output at zero noise, 1 its trained spread.
        """
        generator = torch.Generator().manual_seed(seed)
        noise = truncation * torch.randn(count, self.settings.noise_size, generator=generator)
        if class_name is None:
            labels = torch.randint(max(1, len(self.class_names)), (count,), generator=generator)
        else:
            labels = torch.full((count,), self.label_of(class_name))
        return self.generate(noise, labels).numpy()

    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Embeddings (n, embedding_size) made from noise (n, noise_size) for class rows labels (n,) int64
        (all 0 for an unconditional GAN)."""
        with torch.inference_mode():
            made = self.generator(torch.cat([noise, _one_hot(labels, len(self.class_names))], dim=1))
            return self.standardiser.restore(made)

    def label_of(self, class_name: str) -> int:
        """The row of ``class_name`` in class_names; an unknown class, or any for an unconditional GAN, is a one-line error."""
        if not self.class_names:
            raise NeuralShapesError(f"this GAN is unconditional: it cannot make class '{class_name}'")
        if class_name not in self.class_names:
            raise NeuralShapesError(f"unknown class '{class_name}' (this GAN makes {', '.join(self.class_names)})")
        return self.class_names.index(class_name)


def train_latent_gan(
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    settings: LatentGanSettings = LatentGanSettings(),
    progress: Callable[[TaskProgress], None] | None = None,
    cancel: threading.Event | None = None,
    standardiser: Standardiser | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 250,
) -> LatentGan:
    """Train a GAN on ``embeddings`` (n, e); with ``labels`` (n,) indices into ``class_names`` it is
    conditional. Progress figures: "critic" (the critic's loss, penalty included), "wasserstein" (its
    estimate of the distance between real and generated embeddings) and "generator".

    ``standardiser`` (None: the embeddings' own mean and std) maps embeddings to what the networks read.
    With ``checkpoint``, the state is saved there every ``checkpoint_every`` generator steps and a run of
    the same data and settings resumes from it (the step count may grow); the file is deleted at the end.
    ``cancel`` stops at the next step with :class:`backend.errors.Cancelled` (the checkpoint stays).
    """
    data = as_embeddings(embeddings)
    if (labels is None) != (class_names is None):
        raise NeuralShapesError("a conditional GAN needs both labels and class names, an unconditional one neither")
    classes = tuple(class_names or ())
    torch.manual_seed(settings.seed)
    gan = LatentGan(
        settings,
        classes,
        standardiser or Standardiser.of(data),
        generator_network(settings, data.shape[1], len(classes)),
    )
    real = gan.standardiser(data)
    label_of_row = torch.zeros(len(data), dtype=torch.long) if labels is None else as_labels(labels, classes, len(data))
    critic = mlp((data.shape[1] + len(classes), *settings.critic_hidden, 1))
    generator_optimiser, critic_optimiser = (
        torch.optim.Adam(net.parameters(), lr=settings.learning_rate, betas=(0.5, 0.9))
        for net in (gan.generator, critic)
    )
    draws = torch.Generator().manual_seed(settings.seed)
    batch = min(settings.batch_size, len(data))

    def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real rows, their one-hot classes, and the generator's input for rows of the same classes."""
        rows = torch.randint(len(data), (batch,), generator=draws)
        condition = _one_hot(label_of_row[rows], len(classes))
        return (
            real[rows],
            condition,
            torch.cat([torch.randn(batch, settings.noise_size, generator=draws), condition], dim=1),
        )

    every = report_every(settings.steps)
    sums, since = dict.fromkeys(("critic", "wasserstein", "generator"), 0.0), 0
    figures = dict.fromkeys(sums, float("nan"))
    nets, optimisers = (gan.generator, critic), (generator_optimiser, critic_optimiser)
    run_key = _run_key(real, label_of_row, classes, settings)
    done, seconds = (
        _resume(checkpoint, run_key, nets, optimisers, draws)
        if checkpoint is not None and checkpoint.exists()
        else (0, 0.0)
    )
    started = time.perf_counter() - seconds
    for step in range(done + 1, settings.steps + 1):
        check_cancel(cancel, "training cancelled")
        for _ in range(settings.critic_steps):
            x, condition, noise = draw()
            with torch.no_grad():
                fake = gan.generator(noise)
            distance = critic(torch.cat([x, condition], 1)).mean() - critic(torch.cat([fake, condition], 1)).mean()
            loss = -distance + settings.gradient_penalty * _gradient_penalty(critic, x, fake, condition, draws)
            _update(critic_optimiser, loss)
        _, condition, noise = draw()
        generator_loss = -critic(torch.cat([gan.generator(noise), condition], 1)).mean()
        _update(generator_optimiser, generator_loss)
        since += 1
        for key, value in (("critic", loss), ("wasserstein", distance), ("generator", generator_loss)):
            sums[key] += value.item()  # the critic's figures are those of its last step
        if step % every == 0 or step == settings.steps:
            figures, sums, since = {key: value / since for key, value in sums.items()}, dict.fromkeys(sums, 0.0), 0
            if progress is not None:
                progress(TaskProgress(step, settings.steps, figures))
        if checkpoint is not None and step % checkpoint_every == 0 and step < settings.steps:
            save_tensors(
                checkpoint,
                {
                    "run": run_key,
                    "step": step,
                    "seconds": time.perf_counter() - started,
                    "nets": [net.state_dict() for net in nets],
                    "optimisers": [optimiser.state_dict() for optimiser in optimisers],
                    "draws": draws.get_state(),
                },
            )
    gan.generator.eval()
    gan.training = {
        "steps": settings.steps,
        "seconds": round(time.perf_counter() - started, 2),
        "embeddings": len(data),
        **{f"final_{key}": value for key, value in figures.items()},
    }
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return gan


def _run_key(real: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], settings: LatentGanSettings) -> str:
    """What a checkpoint must match to be resumed: the standardised data, labels, classes and settings (not the step count)."""
    kept = {key: value for key, value in asdict(settings).items() if key != "steps"}
    digest = hashlib.sha256(real.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
    return json.dumps({"settings": kept, "classes": list(classes), "data": digest}, sort_keys=True)


def _resume(
    path: Path,
    run_key: str,
    nets: tuple[torch.nn.Module, ...],
    optimisers: tuple[torch.optim.Optimizer, ...],
    draws: torch.Generator,
) -> tuple[int, float]:
    """Load a checkpoint into the nets, optimisers and draws: (generator steps done, seconds so far)."""
    failure = "not a valid GAN training checkpoint"
    state = load_tensors(path, failure)
    if state.get("run") != run_key:
        raise NeuralShapesError(
            f"{path}: checkpoint of another run (data or settings differ); delete it or pass the same ones"
        )
    try:
        for net, net_state in zip(nets, state["nets"], strict=True):
            net.load_state_dict(net_state)
        for optimiser, optimiser_state in zip(optimisers, state["optimisers"], strict=True):
            optimiser.load_state_dict(optimiser_state)
        draws.set_state(state["draws"])
        return int(state["step"]), float(state["seconds"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise NeuralShapesError(f"{path}: {failure} ({type(error).__name__}: {error})".splitlines()[0]) from None


def save_gan(folder: Path, gan: LatentGan) -> Path:
    """Write ``folder/gan.safetensors`` next to the nf2vec model in ``folder`` (layout: :mod:`backend.nf2vec.tasks.task_file`)."""
    return save_task_file(folder, TASK, gan, gan.class_names)


def load_gan(folder: Path, model: Nf2vecModel) -> LatentGan:
    """Read ``folder/gan.safetensors`` for ``model``'s embeddings; a bad file is a one-line :class:`NeuralShapesError`."""
    return load_classes_task(folder, TASK, model, LatentGan, LatentGanSettings, generator_network)


def generator_network(settings: LatentGanSettings, embedding_size: int, classes: int) -> torch.nn.Module:
    """The untrained generator: (noise_size + classes) -> embedding_size (a standardised embedding)."""
    return mlp((settings.noise_size + classes, *settings.generator_hidden, embedding_size))


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(n, classes) float one-hot rows; (n, 0) for an unconditional GAN (no classes)."""
    return F.one_hot(labels, classes).float() if classes else torch.zeros(len(labels), 0)


def _gradient_penalty(
    critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor, draws: torch.Generator
) -> torch.Tensor:
    """Mean (|grad critic| - 1)^2 at random points between real and generated rows (the class held fixed)."""
    mix = torch.rand(len(real), 1, generator=draws)
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(torch.cat([between, condition], 1)).sum(), between, create_graph=True)
    return ((gradient.norm(dim=1) - 1) ** 2).mean()


def _update(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
