"""The jobs of the ``wearssl`` command, one module each (its arguments and how it runs),
in the order ``wearssl --help`` lists them."""

from __future__ import annotations

from wearssl.commands import ablate, datasets, evaluate, explain, ingest, predict, pretrain, synth
from wearssl.commands.command import Command

COMMANDS: tuple[Command, ...] = (
    synth.COMMAND,
    ingest.COMMAND,
    datasets.COMMAND,
    pretrain.COMMAND,
    evaluate.COMMAND,
    ablate.COMMAND,
    explain.COMMAND,
    predict.PREDICT,
    predict.COLLATE,
)
