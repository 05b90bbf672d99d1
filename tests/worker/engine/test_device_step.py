"""The GPU-shaped step against the implementations it replaced: ClassMix masks built as whole-batch tensor
operations, the replay buffer's batched push, the EMA with torch._foreach_lerp_."""

import copy

import pytest
import torch
from torch import nn

from worker.engine.masks import chosen_classes, classmix_mask
from worker.engine.replay import ReplayBuffer
from worker.engine.teacher import EMATeacher


def _loop_classmix(labels: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The previous per-image loop, given the classes each image pastes."""
    masks = torch.zeros(labels.shape)
    for b in range(labels.shape[0]):
        masks[b] = torch.isin(labels[b], torch.nonzero(chosen[b]).flatten()).float()
    return masks.unsqueeze(1)


def test_classmix_pastes_half_the_present_classes_as_the_loop_did():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (6, 16, 16), generator=gen)
    labels[0] = 2  # one class: pasted whole
    labels[1] = 255  # nothing present: nothing pasted
    labels[2, :8] = 255
    present = torch.zeros(6, 256, dtype=torch.bool).scatter_(1, labels.flatten(1), True)
    present[:, 255] = False
    chosen = chosen_classes(present, torch.rand(6, 256, generator=gen))
    assert chosen.sum(1).tolist() == ((present.sum(1) + 1) // 2).tolist()  # ceil(C/2), as ClassMix's code
    assert not (chosen & ~present).any()
    mask = classmix_mask(labels, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (6, 1, 16, 16) and mask[0].all() and not mask[1].any()
    # The mask is exactly the loop's mask for the classes it chose.
    pasted = torch.zeros(6, 256, dtype=torch.bool)
    for b in range(6):
        inside = labels[b][mask[b, 0] > 0.5]
        pasted[b, inside.unique()] = True
    assert pasted.sum(1).tolist() == ((present.sum(1) + 1) // 2).tolist()
    assert torch.equal(mask, _loop_classmix(labels, pasted))


def test_balanced_classmix_draws_heavy_classes_more_often():
    labels = torch.tensor([0, 1, 2, 3]).repeat_interleave(4).view(1, 4, 4).expand(2000, 4, 4)
    weights = torch.tensor([0.01, 0.01, 0.01, 10.0])
    mask = classmix_mask(labels, class_weights=weights, generator=torch.Generator().manual_seed(0))
    share = mask[:, 0, 3, 0].mean().item()  # row 3 is class 3: pasted in 2 of 4 draws by chance alone
    assert share > 0.95 and mask[:, 0].sum((1, 2)).eq(8).all()


def _previous_push(buf: ReplayBuffer, images, labels, inside, targets):
    """The previous one-crop-at-a-time push, on a reference buffer's storage."""
    for b in range(images.shape[0]):
        i = buf._next
        buf._images[i] = (images[b] * 255.0).round().clamp(0, 255).to(torch.uint8)
        buf._labels[i] = labels[b].to(torch.uint8)
        buf._inside[i] = inside[b]
        buf._classes[i] = torch.bincount(targets[b].reshape(-1).clamp(0, buf.num_classes - 1),
                                         minlength=buf.num_classes) > 0
        buf._next = (i + 1) % buf.capacity
        buf.size = min(buf.size + 1, buf.capacity)


@pytest.mark.parametrize("batches", [[3, 2], [7], [2, 9, 1]])
def test_batched_replay_push_stores_what_one_by_one_pushes_stored(batches):
    gen = torch.Generator().manual_seed(0)
    fast, slow = ReplayBuffer(5, 4), ReplayBuffer(5, 4)
    for b in batches:
        x, y = torch.rand(b, 3, 4, 4, generator=gen), torch.randint(0, 4, (b, 4, 4), generator=gen)
        inside, t = torch.rand(b, 4, 4, generator=gen) > 0.2, torch.randint(0, 4, (b, 4, 4), generator=gen)
        fast.push(x, y, inside, t)
        if slow._images is None:
            slow.push(x[:1], y[:1], inside[:1], t[:1])
            _previous_push(slow, x[1:], y[1:], inside[1:], t[1:])
        else:
            _previous_push(slow, x, y, inside, t)
    for name in ("_images", "_labels", "_inside", "_classes"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert (fast.size, fast._next) == (slow.size, slow._next)
    a = fast.sample(6, torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.Generator().manual_seed(3))
    b = slow.sample(6, torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.Generator().manual_seed(3))
    assert all(torch.equal(s, t) for s, t in zip(a[0] + a[1], b[0] + b[1], strict=True))


def test_foreach_ema_equals_the_per_parameter_loop():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    teacher = EMATeacher(student, momentum=0.9)
    reference = copy.deepcopy(teacher.module)
    for step in range(5):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
            student[1].running_mean.add_(1.0)
        m = teacher.update(step)
        with torch.no_grad():
            for t, s in zip(reference.parameters(), student.parameters(), strict=True):
                t.mul_(m).add_(s, alpha=1.0 - m)
            for t, s in zip(reference.buffers(), student.buffers(), strict=True):
                t.copy_(s)
    for a, b in zip(teacher.module.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
