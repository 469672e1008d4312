"""The downstream protocol's arms: their names and what each starts from, in one place.

Every other module (the job schemas, training, the results table) takes its arm lists from
here; a new arm is added to :data:`ArmName` and to the groups it belongs to.
"""

from __future__ import annotations

from typing import Literal, get_args

ArmName = Literal["forest", "scratch", "frozen", "finetune", "transfer"]
# The arms an ablation evaluates (the transfer arm needs a second labelled set).
AblationArm = Literal["forest", "scratch", "frozen", "finetune"]

ARMS: tuple[str, ...] = get_args(ArmName)  # also the order of arms in tables
FOREST = "forest"
NEURAL_ARMS = tuple(arm for arm in ARMS if arm != FOREST)
# Arms whose feature extractor starts from the pre-trained weights of the job.
PRETRAINED_ARMS = ("frozen", "finetune")
# Arms whose feature extractor starts from given weights (pre-trained or the transfer source).
INITIALISED_ARMS = (*PRETRAINED_ARMS, "transfer")
