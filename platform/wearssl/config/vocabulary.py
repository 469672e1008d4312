"""The words every stage shares, each defined once: the downstream protocol's arms (their
names and what each starts from) and the window lengths of models and labelled sets.

Every other module (the job schemas, training, the results table, the corpus, the network)
takes these from here; a new arm is added to :data:`ArmName` and to the groups it belongs
to.
"""

from __future__ import annotations

from typing import Literal, get_args

ArmName = Literal["forest", "scratch", "frozen", "finetune", "transfer"]
# The arms an ablation evaluates (the transfer arm needs a second labelled set).
AblationArm = Literal["forest", "scratch", "frozen", "finetune"]

ARMS: tuple[str, ...] = get_args(ArmName)  # also the order of arms in tables
FOREST = "forest"
TRANSFER = "transfer"
NEURAL_ARMS = tuple(arm for arm in ARMS if arm != FOREST)
# Arms whose feature extractor starts from the pre-trained weights of the job.
PRETRAINED_ARMS = ("frozen", "finetune")
# Arms whose feature extractor starts from given weights (pre-trained or the transfer source).
INITIALISED_ARMS = (*PRETRAINED_ARMS, TRANSFER)

# The window lengths (s) of harnet models and labelled sets.
WindowSeconds = Literal[5, 10, 30]
WINDOW_LENGTHS: tuple[int, ...] = get_args(WindowSeconds)
