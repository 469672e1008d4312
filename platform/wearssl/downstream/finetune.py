"""Training one arm of the downstream protocol on one fold.

Neural arms share one loop (:func:`fit_classifier`): Adam with ``amsgrad=True`` (as the
paper's code), class-weighted cross-entropy
with weights from the training fold's class frequencies, axis-swap + rotation
augmentation of every training batch, early stopping on the validation subjects'
(equally weighted) loss, and the best-validation weights restored at the end. They differ
in where the feature extractor starts and what is trained:

* ``scratch``: random initialisation, all layers trained;
* ``frozen``: pre-trained feature extractor, frozen (no gradients, BatchNorm kept in eval
  mode so its running statistics stay those of pre-training); only the head is trained;
* ``finetune``: pre-trained feature extractor, all layers trained;
* ``transfer``: feature extractor of a classifier trained supervised on another labelled
  set (:func:`train_transfer_source`), all layers trained.

The ``linear_probe`` arm (:mod:`wearssl.downstream.linear_probe`) trains no network: a
logistic regression on the frozen pre-trained features. Every neural arm starts with a
freshly initialised head. The ``forest`` arm is the
balanced random forest of :mod:`wearssl.models.forest`. It has no early stopping, so, as in
the paper, it is fit on every non-test window of the fold (training and validation
subjects together) and has no validation loss (NaN).

The batch size is the labelled set's (:attr:`LabelledSet.batch_size`, which a dataset
recipe or the evaluation config sets: the paper used 50 for ADL and 500 for WISDM, as a
small set needs small batches to get enough steps per epoch), else the ``finetune`` one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wearssl.config.evaluate import Finetune
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.downstream.linear_probe import train_linear_probe_arm
from wearssl.models.forest import fit_forest, predict_forest
from wearssl.models.harnet import HarNet, harnet, save_checkpoint
from wearssl.pretrain.transforms import augment

NEURAL_ARMS = ("scratch", "frozen", "finetune", "transfer")
INITIALISED_ARMS = ("frozen", "finetune", "transfer")
ARMS = ("forest", "linear_probe", *NEURAL_ARMS)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float


@dataclass
class FitOutcome:
    best_val_loss: float
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)


@dataclass
class ArmOutcome:
    """One trained arm on one fold: test-window class probabilities and how training went."""

    probabilities: np.ndarray  # (n_test, n_classes) float32
    val_loss: float
    best_epoch: int
    history: list[EpochRecord]
    model: HarNet | None  # None for the forest


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """``n / (k * n_c)`` for each of the k classes present in ``labels``; 0 for absent ones.

    Weighted this way, every present class contributes equally to the mean loss.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("class weights need at least one label")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}); got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def device_for_training() -> torch.device:
    """The GPU when this process was given one (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_classifier(
    arm: str, window_seconds: int, n_classes: int, seed: int, init: str | Path | None = None
) -> HarNet:
    """harnet with a fresh head; arms other than scratch take ``init``'s feature extractor.

    ``init`` is one of our checkpoints or a published file; only its feature extractor is
    used, so a supervised source model's head (other classes) never leaks in.
    """
    if arm not in NEURAL_ARMS:
        raise ValueError(f"arm {arm!r} is not a neural arm {NEURAL_ARMS}")
    torch.manual_seed(seed)
    model = harnet(window_seconds, n_classes=n_classes)
    if arm in INITIALISED_ARMS:
        if init is None:
            raise ValueError(f"arm {arm!r} needs weights to start from")
        donor = harnet(window_seconds, pretrained=init)
        model.feature_extractor.load_state_dict(donor.feature_extractor.state_dict())
    if arm == "frozen":
        freeze_feature_extractor(model)
    return model


def freeze_feature_extractor(model: HarNet) -> None:
    for parameter in model.feature_extractor.parameters():
        parameter.requires_grad_(False)


def is_frozen(model: HarNet) -> bool:
    return not any(p.requires_grad for p in model.feature_extractor.parameters())


def set_training_mode(model: HarNet) -> None:
    """Train mode, except a frozen feature extractor, whose BatchNorm stays in eval mode."""
    model.train()
    if is_frozen(model):
        model.feature_extractor.eval()


def trainable_parameters(model: HarNet) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def predict_logits(model: HarNet, windows: np.ndarray, batch_size: int) -> torch.Tensor:
    """Logits ``(n, k)`` on the CPU, computed in eval mode on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [
        model(torch.from_numpy(windows[start : start + batch_size]).to(device)).float().cpu()
        for start in range(0, len(windows), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, model.n_classes)


def predict_probabilities(model: HarNet, windows: np.ndarray, batch_size: int) -> np.ndarray:
    return torch.softmax(predict_logits(model, windows, batch_size), dim=1).numpy()


def validation_loss(
    model: HarNet, windows: np.ndarray, labels: np.ndarray, weights: torch.Tensor, batch_size: int
) -> float:
    logits = predict_logits(model, windows, batch_size)
    return float(F.cross_entropy(logits, torch.from_numpy(labels), weight=weights))


def train_one_epoch(
    model: HarNet,
    optimiser: torch.optim.Optimizer,
    windows: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    settings: Finetune,
    generators: tuple[torch.Generator, torch.Generator],
) -> float:
    """One pass over the training windows in shuffled batches; the mean batch loss.

    ``generators``: (CPU generator for the batch order, one on the model's device for the
    augmentation).
    """
    shuffle, augmentation = generators
    set_training_mode(model)
    device = next(model.parameters()).device
    order = torch.randperm(len(windows), generator=shuffle)
    losses = []
    for start in range(0, len(order), settings.batch_size):
        index = order[start : start + settings.batch_size]
        x = windows[index].to(device)
        if settings.augment:
            x = augment(x, augmentation)
        loss = F.cross_entropy(model(x), labels[index].to(device), weight=weights.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def downstream_optimiser(model: HarNet, settings: Finetune) -> torch.optim.Adam:
    """The paper's downstream optimiser: Adam with AMSGrad on the trainable parameters."""
    return torch.optim.Adam(trainable_parameters(model), lr=settings.lr, amsgrad=True)


def fit_classifier(
    model: HarNet,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: Finetune,
    seed: int,
) -> FitOutcome:
    """Train ``model`` in place (see the module docstring); the best-validation weights are
    restored before returning."""
    train_x, train_y = train
    val_x, val_y = val
    if len(train_x) == 0 or len(val_x) == 0:
        raise ValueError(
            f"need training and validation windows; got {len(train_x)} and {len(val_x)}"
        )
    device = next(model.parameters()).device
    weights = class_weights(train_y, model.n_classes)
    generators = (
        torch.Generator().manual_seed(seed),
        torch.Generator(device=device).manual_seed(seed),
    )
    optimiser = downstream_optimiser(model, settings)
    windows, labels = torch.from_numpy(train_x), torch.from_numpy(train_y)
    best = FitOutcome(best_val_loss=math.inf, best_epoch=-1)
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    for epoch in range(settings.max_epochs):
        train_loss = train_one_epoch(
            model, optimiser, windows, labels, weights, settings, generators
        )
        val_loss = validation_loss(model, val_x, val_y, weights, settings.batch_size)
        best.history.append(EpochRecord(epoch, train_loss, val_loss))
        if val_loss < best.best_val_loss:
            best.best_val_loss, best.best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= settings.patience:
                break
    model.load_state_dict(best_state)
    return best


def settings_for(data: LabelledSet, settings: Finetune) -> Finetune:
    """``settings`` with the labelled set's own batch size, when it has one."""
    if data.batch_size is None:
        return settings
    return settings.model_copy(update={"batch_size": data.batch_size})


def train_neural_arm(
    arm: str,
    data: LabelledSet,
    fold: Fold,
    seed: int,
    settings: Finetune,
    init: str | Path | None = None,
) -> ArmOutcome:
    n_classes = len(data.label_names)
    settings = settings_for(data, settings)
    model = build_classifier(arm, data.window_seconds, n_classes, seed, init)
    model.to(device_for_training())
    fit = fit_classifier(
        model,
        (data.windows[fold.train], data.labels[fold.train]),
        (data.windows[fold.val], data.labels[fold.val]),
        settings,
        seed,
    )
    probabilities = predict_probabilities(model, data.windows[fold.test], settings.batch_size)
    return ArmOutcome(probabilities, fit.best_val_loss, fit.best_epoch, fit.history, model.cpu())


def expand_probabilities(
    probabilities: np.ndarray, classes: np.ndarray, n_classes: int
) -> np.ndarray:
    """Probabilities over the classes a model saw -> over all ``n_classes`` (0 elsewhere)."""
    full = np.zeros((len(probabilities), n_classes), dtype=np.float32)
    full[:, np.asarray(classes, dtype=np.int64)] = probabilities
    return full


def train_forest_arm(
    data: LabelledSet, fold: Fold, seed: int, n_estimators: int, n_jobs: int = 1
) -> ArmOutcome:
    """The forest, fit on every non-test window of the fold; its validation loss is NaN."""
    n_classes = len(data.label_names)
    fit_on = non_test_windows(fold)
    forest = fit_forest(
        data.windows[fit_on],
        data.labels[fit_on],
        seed=seed,
        n_estimators=n_estimators,
        n_jobs=n_jobs,
    )
    test_probabilities = expand_probabilities(
        predict_forest(forest, data.windows[fold.test])[1], forest.classes_, n_classes
    )
    return ArmOutcome(test_probabilities, math.nan, 0, [], None)


def non_test_windows(fold: Fold) -> np.ndarray:
    """The training and validation windows of a fold, in index order."""
    return np.sort(np.concatenate([fold.train, fold.val]))


def train_arm(
    arm: str,
    data: LabelledSet,
    fold: Fold,
    seed: int,
    settings: Finetune,
    *,
    n_estimators: int = 3000,
    n_jobs: int = 1,
    init: str | Path | None = None,
) -> ArmOutcome:
    if arm == "forest":
        return train_forest_arm(data, fold, seed, n_estimators, n_jobs)
    if arm == "linear_probe":
        if init is None:
            raise ValueError("arm 'linear_probe' needs weights to take features from")
        probabilities, val_loss = train_linear_probe_arm(data, fold, seed, init)
        return ArmOutcome(probabilities, val_loss, 0, [], None)
    return train_neural_arm(arm, data, fold, seed, settings, init)


def source_fold(source: LabelledSet, fold: Fold) -> Fold:
    """The transfer source is trained on every subject but the fold's validation ones."""
    train = np.sort(np.concatenate([fold.train, fold.test]))
    return Fold(name=f"source-{fold.name}", train=train, val=fold.val, test=fold.test[:0])


def train_transfer_source(
    source: LabelledSet, first_fold: Fold, settings: Finetune, seed: int, out: str | Path
) -> Path:
    """Train a classifier from scratch on the whole source set (less its validation subjects)
    and save it as one of our checkpoints at ``out``; the transfer arm starts from it."""
    fold = source_fold(source, first_fold)
    outcome = train_neural_arm("scratch", source, fold, seed, settings)
    out = Path(out)
    save_checkpoint(
        out,
        outcome.model,
        window_seconds=source.window_seconds,
        labels=list(source.label_names),
        extra={"dataset": source.name, "arm": "transfer-source", "val_loss": outcome.val_loss},
    )
    return out
