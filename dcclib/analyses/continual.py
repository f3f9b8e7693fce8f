"""Figures 7 and 8: task-incremental continual learning with a replay memory.

A shared trunk (a registry model's `embed`) with one linear head per task (multi-head: the task
label of every sample is given, at training and at test time). All heads are evaluated together
and the logits outside a sample's task are masked to -inf, which is the same as using that
task's head alone, and lets replayed samples of several tasks share one batch.

Memories (10 images per class of every old task, as in the paper):
- ring: Experience Replay with a ring buffer (ER-RB, Chaudhry et al. 2019): equal slots per
  class, each class keeping the newest samples of the stream it has seen (a FIFO ring);
- dsa / dsac: the ring buffer replaced by the set condensed from the task's training data.
- none: no memory (fine-tuning; a lower bound, not in the paper's figures).
While learning task t, every step trains on a batch of task t mixed with a replay batch drawn
uniformly from the memory of tasks < t (ER's recipe). After each task, every task seen so far
is tested; the figures plot the mean of those accuracies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcclib.condense import CondenseConfig, condense
from dcclib.data import ImageDataset
from dcclib.errors import UserError
from dcclib.evaluate import PROTOCOL, protocol_optimizer
from dcclib.methods import CONDENSATION_METHODS
from dcclib.models import create_model
from dcclib.runtime import derive_seed

# the task sequences of Figures 7-8 and their loaders: dcclib.analyses.task_sequences

# Memory strategies, a vocabulary of this analysis (not the method list): a ring buffer of real
# samples, the memories of Figures 7-8 condensed by DSA or DSAC, or no memory. Whether a
# strategy condenses is asked of dcclib.methods (`condenses`).
METHODS = ("ring", "dsa", "dsac", "none")


# ---------------------------------------------------------------------------------------------
# The multi-head network and its logit mask
# ---------------------------------------------------------------------------------------------
def task_bounds(task_classes: list[int]) -> Tensor:
    """Offsets of each task's classes in the concatenated logits: [T + 1]."""
    return torch.tensor([0, *np.cumsum(task_classes).tolist()], dtype=torch.long)


def mask_logits(logits: Tensor, task_ids: Tensor, bounds: Tensor) -> Tensor:
    """-inf outside each sample's task: softmax/argmax then see only that task's head."""
    cols = torch.arange(logits.shape[1], device=logits.device).view(1, -1)
    b = bounds.to(logits.device)
    inside = (cols >= b[task_ids].view(-1, 1)) & (cols < b[task_ids + 1].view(-1, 1))
    return logits.masked_fill(~inside, float("-inf"))


class MultiHeadNet(nn.Module):
    """A registry model's trunk (`embed`) shared by one linear head per task."""

    def __init__(
        self, model: str, channels: int, image_size: int | tuple[int, int], task_classes: list[int]
    ) -> None:
        super().__init__()
        trunk = create_model(model, channels, 2, image_size)
        trunk.classifier = nn.Identity()  # the trunk's own head is replaced by the task heads
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(trunk.feature_dim, c) for c in task_classes)
        self.register_buffer("bounds", task_bounds(task_classes), persistent=False)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """Masked logits over all tasks' classes (global class index = bounds[task] + local)."""
        f = self.trunk.embed(x)
        return mask_logits(torch.cat([h(f) for h in self.heads], dim=1), task_ids, self.bounds)


# ---------------------------------------------------------------------------------------------
# Memories
# ---------------------------------------------------------------------------------------------
class RingBuffer:
    """Equal slots per class; each class keeps the newest `slots` samples it has been shown.

    Sample k (0-based) of class c in the stream goes to slot k mod `slots` of that class, so
    once full, a new sample replaces the oldest. Updates stay on the device (no host sync).
    """

    def __init__(
        self, slots: int, num_classes: int, sample_shape: tuple[int, ...], device: str | torch.device = "cpu"
    ) -> None:
        if slots <= 0 or num_classes <= 0:
            raise UserError(f"a ring buffer needs positive slots and classes, got {slots}, {num_classes}")
        self.slots, self.num_classes = slots, num_classes
        self.storage = torch.zeros(num_classes * slots + 1, *sample_shape, device=device)  # +1: a dump row
        self.seen = torch.zeros(num_classes, dtype=torch.long, device=device)

    def add(self, x: Tensor, y: Tensor) -> None:
        onehot = F.one_hot(y, self.num_classes)
        rank = (onehot.cumsum(0) - 1).gather(1, y.view(-1, 1)).view(-1)  # order within its class
        in_batch = onehot.sum(0)
        keep = rank >= in_batch[y] - self.slots  # only a class's last `slots` of this batch survive
        slot = (self.seen[y] + rank) % self.slots
        dump = self.storage.shape[0] - 1
        rows = torch.where(keep, y * self.slots + slot, torch.full_like(y, dump))
        self.storage[rows] = x.to(self.storage.dtype)
        self.seen += in_batch

    def contents(self, classes: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """The stored samples of `classes` (all by default), class-blocked, slot order."""
        classes = list(range(self.num_classes)) if classes is None else classes
        filled = self.seen.clamp(max=self.slots).tolist()  # one sync, at the end of a task
        rows = [c * self.slots + s for c in classes for s in range(filled[c])]
        labels = [c for c in classes for _ in range(filled[c])]
        idx = torch.tensor(rows, dtype=torch.long, device=self.storage.device)
        return self.storage[idx], torch.tensor(labels, dtype=torch.long, device=self.storage.device)


def condenses(method: str) -> bool:
    """The memory strategy is a condensation method (its memory is a condensed set)."""
    return method in CONDENSATION_METHODS


def condensed_memory(
    task: ImageDataset, method: str, condense_cfg: CondenseConfig, per_class: int, seed: int
) -> tuple[Tensor, Tensor]:
    """DSA/DSAC memory of one task: its condensed set with `per_class` images per class."""
    cfg = replace(
        condense_cfg,
        dataset=task.name,
        method=method,
        ipc=per_class,
        seed=derive_seed("continual-memory", seed, task.name) % (2**31),
    )
    result = condense(cfg, task, progress=False)
    return result.images.detach(), result.labels


# ---------------------------------------------------------------------------------------------
# Training, testing and bookkeeping
# ---------------------------------------------------------------------------------------------
@dataclass
class ContinualConfig:
    """How the tasks are learned: the protocol's optimiser (`dcclib.protocol.PROTOCOL`: lr,
    momentum, weight decay), but deliberately not its schedule or batch: ER's recipe of
    `epochs` passes per task with one optimiser (no lr drop), batches of 128 plus 128 replayed."""

    method: str = "ring"  # ring | dsa | dsac | none (METHODS)
    model: str = "convnet"
    epochs: int = 10  # passes over each task's training set
    batch_size: int = 128  # not the protocol's 256 (ER's batch)
    replay_batch: int = 128
    lr: float = PROTOCOL.lr
    momentum: float = PROTOCOL.momentum
    weight_decay: float = PROTOCOL.weight_decay
    memory_per_class: int = 10
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown continual method '{self.method}'; choose one of: {', '.join(METHODS)}")
        for k in ("epochs", "batch_size", "replay_batch", "memory_per_class"):
            if getattr(self, k) <= 0:
                raise UserError(f"{k.replace('_', '-')} must be positive, got {getattr(self, k)}")
        if self.lr <= 0:
            raise UserError(f"lr must be positive, got {self.lr}")


@dataclass
class ContinualResult:
    method: str
    task_names: list[str]
    accuracy: list[list[float]] = field(default_factory=list)  # accuracy[t][i]: after task t, on task i <= t
    memory_sizes: list[int] = field(default_factory=list)  # replay memory size while learning task t
    config: dict = field(default_factory=dict)

    @property
    def average(self) -> list[float]:
        return average_accuracy(self.accuracy)

    def as_dict(self) -> dict:
        return {**asdict(self), "average": self.average}


def average_accuracy(accuracy: list[list[float]]) -> list[float]:
    """After task t: the mean accuracy over the tasks seen so far (0..t)."""
    out = []
    for t, row in enumerate(accuracy):
        if len(row) < t + 1:
            raise UserError(f"after task {t} there are accuracies for {len(row)} tasks, expected {t + 1}")
        out.append(float(np.mean(row[: t + 1])))
    return out


@torch.no_grad()
def task_accuracy(net: MultiHeadNet, task: ImageDataset, task_id: int, batch: int = 1024) -> Tensor:
    """Test accuracy on one task with its own head (task label given), as a device tensor."""
    net.eval()
    correct = torch.zeros((), device=task.device)
    offset = int(net.bounds[task_id])
    for s in range(0, len(task.test_labels), batch):
        x = task.test_images[s : s + batch]
        ids = torch.full((len(x),), task_id, dtype=torch.long, device=x.device)
        pred = net(x, ids).argmax(1) - offset
        correct += (pred == task.test_labels[s : s + batch]).sum()
    net.train()
    return correct / len(task.test_labels)


def train_task(
    net: MultiHeadNet,
    task: ImageDataset,
    task_id: int,
    cfg: ContinualConfig,
    memory: tuple[Tensor, Tensor, Tensor] | None,
    buffer: RingBuffer | None,
) -> None:
    """cfg.epochs shuffled passes over the task; each batch mixed with a replay batch from memory
    (images, global labels, task ids); the ring buffer, if any, sees every current batch."""
    # one optimiser for the whole task: no lr drop here (ER's recipe, not the protocol's schedule)
    opt = protocol_optimizer(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    x_all, y_all = task.train_images, task.train_labels + int(net.bounds[task_id])
    n = len(y_all)
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, device=x_all.device)
        for s in range(0, n, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            x, y = x_all[idx], y_all[idx]
            ids = torch.full_like(y, task_id)
            if memory is not None:
                j = torch.randint(len(memory[1]), (cfg.replay_batch,), device=x.device)
                x, y, ids = (torch.cat([a, m[j]]) for a, m in zip((x, y, ids), memory))
            loss = F.cross_entropy(net(x, ids), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if buffer is not None:
                buffer.add(x_all[idx], y_all[idx])


def run_continual(
    tasks: list[ImageDataset],
    cfg: ContinualConfig,
    condense_cfg: CondenseConfig | None = None,
    memories: list[tuple[Tensor, Tensor]] | None = None,
) -> ContinualResult:
    """Learn the tasks in order; test every seen task after each one.

    dsa/dsac memories are condensed from each finished task with `condense_cfg` (the method and
    ipc are set here), unless precomputed `memories` (local labels, one per task) are given.
    """
    cfg.check()
    if not tasks:
        raise UserError("a task sequence needs at least one task")
    if condenses(cfg.method) and memories is None and condense_cfg is None:
        raise UserError(f"method {cfg.method} needs a condensation config or precomputed memories")
    # seeds do not depend on the method: every method starts from the same network and sees
    # task 1 in the same order, so the curves differ by their memories only
    torch.manual_seed(derive_seed("continual", cfg.seed))
    first = tasks[0]
    classes = [t.num_classes for t in tasks]
    net = MultiHeadNet(cfg.model, first.channels, first.image_size, classes).to(first.device)
    bounds = net.bounds.tolist()
    buffer = (
        RingBuffer(cfg.memory_per_class, bounds[-1], tuple(first.train_images.shape[1:]), first.device)
        if cfg.method == "ring"
        else None
    )
    memory: tuple[Tensor, Tensor, Tensor] | None = None
    result = ContinualResult(cfg.method, [t.name for t in tasks], config={"continual": asdict(cfg)})
    if condense_cfg is not None:
        result.config["condense"] = asdict(condense_cfg)
    for t, task in enumerate(tasks):
        torch.manual_seed(derive_seed("continual-task", cfg.seed, t))
        result.memory_sizes.append(0 if memory is None else len(memory[1]))
        train_task(net, task, t, cfg, memory, buffer)
        accs = torch.stack([task_accuracy(net, tasks[i], i) for i in range(t + 1)])
        result.accuracy.append([float(a) for a in accs.tolist()])
        if t == len(tasks) - 1 or cfg.method == "none":
            continue
        if cfg.method == "ring":
            x_new, y_new = buffer.contents(list(range(bounds[t], bounds[t + 1])))
        else:
            x_new, y_new = (
                memories[t]
                if memories is not None
                else condensed_memory(task, cfg.method, condense_cfg, cfg.memory_per_class, cfg.seed)
            )
            x_new, y_new = x_new.to(task.device), y_new.to(task.device) + bounds[t]
        ids_new = torch.full_like(y_new, t)
        memory = (
            (x_new, y_new, ids_new)
            if memory is None
            else tuple(torch.cat([a, b]) for a, b in zip(memory, (x_new, y_new, ids_new)))
        )
    return result
