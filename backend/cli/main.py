"""The ``neural-shapes`` command line: every command, where it lives, and the app that loads it on demand.

Commands are registered by name in :data:`COMMANDS` and imported only when called, so a command pays
only for what it uses: ``--help`` and ``info`` never import torch or Warp, ``mesh`` and ``render`` import
Warp but not torch. The command list in ``--help`` reads each command's docstring from its source file
(no import). Output tables go to stdout, progress to stderr, and every failure is one line naming the
file and the cause.
"""

from __future__ import annotations

import ast
import gc
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from backend import __version__


@dataclass(frozen=True)
class CommandEntry:
    """Where a command's function lives and under which heading ``--help`` lists it."""

    module: str
    function: str
    panel: str


CONVERT, MESH_RENDER, NF2VEC, DATASETS, TRAIN, TOOLS = (
    "Convert",
    "Mesh and render",
    "nf2vec",
    "Datasets",
    "Train",
    "Tools",
)
COMMANDS: dict[str, CommandEntry] = {
    "fit": CommandEntry("backend.cli.convert", "fit", CONVERT),
    "fit-points": CommandEntry("backend.cli.convert", "fit_points_command", CONVERT),
    "convert": CommandEntry("backend.cli.library", "convert_command", CONVERT),
    "import-keras": CommandEntry("backend.cli.import_keras", "import_keras_command", CONVERT),
    "eval": CommandEntry("backend.cli.convert", "evaluate", CONVERT),
    "mesh": CommandEntry("backend.cli.mesh_render", "mesh", MESH_RENDER),
    "render": CommandEntry("backend.cli.mesh_render", "render", MESH_RENDER),
    "interpolate": CommandEntry("backend.cli.nf2vec", "interpolate_command", NF2VEC),
    "generate": CommandEntry("backend.cli.nf2vec", "generate_command", NF2VEC),
    "complete": CommandEntry("backend.cli.nf2vec", "complete_command", NF2VEC),
    "similar": CommandEntry("backend.cli.nf2vec", "similar_command", NF2VEC),
    "classify": CommandEntry("backend.cli.nf2vec", "classify_command", NF2VEC),
    "make-collection": CommandEntry("backend.cli.datasets", "make_collection_command", DATASETS),
    "make-partials": CommandEntry("backend.cli.datasets", "make_partials_command", DATASETS),
    "meta-train": CommandEntry("backend.cli.train", "meta_train_command", TRAIN),
    "train-nf2vec": CommandEntry("backend.cli.train", "train_nf2vec_command", TRAIN),
    "train-latent": CommandEntry("backend.cli.train", "train_latent_command", TRAIN),
    "train-latent-encoder": CommandEntry("backend.cli.train", "train_latent_encoder_command", TRAIN),
    "train-gan": CommandEntry("backend.cli.train", "train_gan_command", TRAIN),
    "train-z-gan": CommandEntry("backend.cli.train", "train_z_gan_command", TRAIN),
    "train-classifier": CommandEntry("backend.cli.train", "train_classifier_command", TRAIN),
    "train-completion": CommandEntry("backend.cli.train", "train_completion_command", TRAIN),
    "build-neighbour-decoder": CommandEntry("backend.cli.train", "build_neighbour_decoder_command", TRAIN),
    "info": CommandEntry("backend.cli.tools", "info", TOOLS),
    "serve": CommandEntry("backend.cli.tools", "serve", TOOLS),
    "build-addon": CommandEntry("backend.cli.tools", "build_addon_command", TOOLS),
}


@cache
def command_docstring(entry: CommandEntry) -> str:
    """The command function's docstring, read from its module's source without importing it."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry.function:
            return ast.get_docstring(node) or ""
    return ""


class LazyCommands(TyperGroup):
    """A command group that imports a command's module only when that command runs (or shows its help)."""

    listing = False  # True while the group's own --help lists the commands: light stand-ins will do

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if self.listing:
            stand_in = click.Command(cmd_name, help=command_docstring(entry))
            stand_in.rich_help_panel = entry.panel  # type: ignore[attr-defined]  # read by typer's help
            return stand_in
        function = getattr(importlib.import_module(entry.module), entry.function)
        if not gc.isenabled():  # the program turned the collector off for its start-up (NeuralShapesApp)
            gc.freeze()  # what start-up made lives as long as the process: later collections need not walk it
            gc.enable()  # the command itself may make cycles worth collecting
        single = typer.Typer()
        single.command(cmd_name, rich_help_panel=entry.panel)(function)
        return typer.main.get_command(single)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


class NeuralShapesApp(typer.Typer):
    """The app as a program (the console script, ``python -m backend.cli``): run one command, then leave
    without tearing the interpreter down.

    Finalising Python after Warp (and torch) have loaded their native libraries takes 0.2-0.3 s, a
    quarter of a ``mesh`` or ``render`` call, and a finished command needs none of it: every output is
    written, synced and closed before the command returns. Likewise the cyclic garbage collector is off
    while the command's modules import (imports make many objects and no garbage; ~0.1 s) and back on
    before the command runs. Tests drive the app through typer's ``CliRunner``, which never calls this.
    """

    def __call__(self, *args, **kwargs) -> None:
        gc.disable()  # no cycle collection while modules import (~0.1 s of a command's start); on again after
        try:
            super().__call__(*args, **kwargs)
            code = 0
        except SystemExit as stop:
            code = stop.code
        if isinstance(code, str):  # as the interpreter would: print the message, status 1
            print(code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)


app = NeuralShapesApp(cls=LazyCommands, no_args_is_help=True)  # its help: the callback's docstring


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Turn meshes into weight-encoded neural implicits (neural SDFs), evaluate and mesh them."""
