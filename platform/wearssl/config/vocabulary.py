"""The words every stage shares, each defined once: the downstream protocol's arms (their
names and what each starts from) and the window lengths of models and labelled sets.

Every other module (the job schemas, training, the results table, the corpus, the network)
takes these from here; a new arm is added to :data:`ArmName` and to the groups it belongs
to.
"""

from __future__ import annotations

from typing import Literal, get_args

ArmName = Literal["forest", "linear_probe", "scratch", "frozen", "finetune", "transfer"]
# The arms an ablation evaluates (the transfer arm needs a second labelled set).
AblationArm = Literal["forest", "linear_probe", "scratch", "frozen", "finetune"]

ARMS: tuple[str, ...] = get_args(ArmName)  # also the order of arms in tables
FOREST = "forest"
LINEAR_PROBE = "linear_probe"
TRANSFER = "transfer"
# Arms that train a network (the forest and the probe train none).
NEURAL_ARMS = tuple(arm for arm in ARMS if arm not in (FOREST, LINEAR_PROBE))
# Arms that start from the pre-trained weights of the job (the probe reads their features).
PRETRAINED_ARMS = (LINEAR_PROBE, "frozen", "finetune")
# Networks whose feature extractor starts from given weights (pre-trained or transfer source).
INITIALISED_ARMS = ("frozen", "finetune", TRANSFER)

# The window lengths (s) of harnet models and labelled sets.
WindowSeconds = Literal[5, 10, 30]
WINDOW_LENGTHS: tuple[int, ...] = get_args(WindowSeconds)
