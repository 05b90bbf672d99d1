import pytest
import torch
from torch import nn

from worker.engine.teacher import EMATeacher


def _net(value: float) -> nn.Module:
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(value)
    return net


def test_momentum_schedule_and_arithmetic():
    student = _net(0.0)
    teacher = EMATeacher(student, momentum=0.99)
    with torch.no_grad():
        student[0].weight.fill_(2.0)
    assert teacher.update(0) == 0.0  # step 0: the teacher becomes the student
    assert teacher.module[0].weight.item() == pytest.approx(2.0)
    with torch.no_grad():
        student[0].weight.fill_(4.0)
    assert teacher.update(1) == pytest.approx(0.5)  # 0.5 * 2 + 0.5 * 4
    assert teacher.module[0].weight.item() == pytest.approx(3.0)
    with torch.no_grad():
        student[0].weight.fill_(13.0)
    assert teacher.update(1000) == pytest.approx(0.99)  # capped at the momentum
    assert teacher.module[0].weight.item() == pytest.approx(0.99 * 3.0 + 0.01 * 13.0)


def test_buffers_are_copied_not_averaged_and_teacher_has_no_grad():
    student = _net(1.0)
    teacher = EMATeacher(student, momentum=0.9)
    student[1].running_mean.fill_(7.0)
    teacher.update(50)
    assert teacher.module[1].running_mean.item() == 7.0
    assert not any(p.requires_grad for p in teacher.module.parameters())
    assert not teacher.module.training


def test_bad_momentum():
    with pytest.raises(ValueError):
        EMATeacher(_net(0.0), momentum=1.0)
