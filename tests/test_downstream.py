"""The downstream models, the task-loss term and the statistics of their evaluation (fast: no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skinray import checkpoint, downstream, downstream_eval, synth, train
from skinray.config import Config, ModelConfig, load_config
from skinray.errors import ConfigError
from skinray.losses import make_loss
from skinray.model import build_model


def test_models_read_any_size_and_checkpoints_rebuild_them(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 40)
    for task, shape in (("attributes", (2, 5)), ("segmentation", (2, 1, 40, 40))):
        cfg = Config().replace({"model.task": task, "model.width": 4})
        model = downstream.build_task_model(cfg.model).eval()
        assert model(x).shape == shape
        assert len(model.features(x)) == 4
        checkpoint.save(tmp_path / task, model, cfg, {"epoch": 0})
        loaded = checkpoint.load(str(tmp_path / task))
        assert type(loaded.model) is type(model)
        assert torch.equal(loaded.model(x), model(x)), "the saved weights come back"


def test_unknown_attributes_are_left_out_of_the_loss():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0, 1.0], [0.3, 0.2, -0.4, 1.5, -2.0]])
    labels = torch.tensor([[1.0, 0.0, float("nan"), 1.0, 0.0], [float("nan")] * 5])
    known_only = downstream.attribute_loss(logits[:1, [0, 1, 3, 4]], labels[:1, [0, 1, 3, 4]])
    assert torch.isclose(downstream.attribute_loss(logits, labels), known_only)


def _enhancer_grads(task_loss) -> list[torch.Tensor]:
    torch.manual_seed(1)
    model = build_model(ModelConfig()).train()
    clean = torch.from_numpy(synth.skin_image(0, 0, 64)).permute(2, 0, 1)[None].float() / 255
    degraded = (clean * torch.tensor([1.2, 0.9, 0.7])[:, None, None]).clamp(0, 1)
    ok = torch.ones(1, dtype=torch.bool)
    loss = train.step_loss(model, make_loss("psnr", 0.84), model(degraded), clean, ok, task_loss)
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_task_loss_changes_the_gradient_only_when_its_weight_is_not_zero():
    torch.manual_seed(2)
    frozen = [downstream.build_task_model(ModelConfig(task=t, width=4)) for t in ("attributes", "segmentation")]
    without = _enhancer_grads(None)
    at_zero = _enhancer_grads(downstream.TaskLoss(frozen, 0.0))
    weighted = _enhancer_grads(downstream.TaskLoss(frozen, 0.5))
    assert all(torch.equal(a, b) for a, b in zip(without, at_zero))
    assert max(float((a - b).abs().max()) for a, b in zip(without, weighted)) > 1e-6
    assert all(p.grad is None for m in frozen for p in m.parameters()), "the downstream models stay frozen"


def test_task_weight_needs_a_task_model():
    with pytest.raises(ConfigError, match="train.task_model"):
        load_config(overrides={"train.task_weight": 0.1})
    with pytest.raises(ConfigError, match="model.task"):
        load_config(overrides={"model.task": "diagnosis"})


def test_statistics_of_the_evaluation():
    truth = np.array([True, True, False, False, False])
    known = np.ones(5, bool)
    probs = np.array([0.9, 0.4, 0.6, 0.1, 0.2])
    assert downstream_eval.balanced_accuracy(probs, truth, known) == pytest.approx(0.5 * (1 / 2 + 2 / 3))
    assert downstream_eval.auc(probs, truth, known) == pytest.approx(5 / 6)
    assert np.isnan(downstream_eval.auc(probs, np.zeros(5, bool), known)), "one class only: no AUC"
    known[0] = False  # an unknown label leaves the figures as if the photo were absent
    without = downstream_eval.auc(probs[1:], truth[1:], known[1:])
    assert downstream_eval.auc(probs, truth, known) == pytest.approx(without)
    dice, iou = downstream.dice_iou(np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool),
                                    np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool))
    assert dice.tolist() == pytest.approx([2 / 3, 1.0]) and iou.tolist() == pytest.approx([0.5, 1.0])
    ci = downstream_eval.interval(np.linspace(0, 1, 101), 0.5)
    assert ci["lo"] == pytest.approx(0.025) and ci["hi"] == pytest.approx(0.975) and ci["value"] == 0.5


def test_relit_photos_keep_their_geometry_and_differ_by_light_only():
    img = synth.skin_image(0, 3, 64)
    a = downstream_eval.relit(img, "k", 1, "v3", downstream_eval.STRONG_LIGHT)
    assert a.shape == img.shape and not np.array_equal(a, img)
    assert np.array_equal(a, downstream_eval.relit(img, "k", 1, "v3", downstream_eval.STRONG_LIGHT)), "held-out, fixed"
    # no blur: per-channel linear-light gains keep the pixel order of each channel almost everywhere
    order = np.corrcoef(a[..., 1].ravel().astype(float), img[..., 1].ravel().astype(float))[0, 1]
    assert order > 0.97
