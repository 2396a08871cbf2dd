"""The audit on Hugging Face and PEFT models built from tiny configs (nothing downloaded): the image
processor as ``weights=`` and as the transform, samples synthesized for text and vision models and
given as a tokenizer's dict, ``head-size`` from ``config.num_labels``, schedulers bound through
accelerate's optimizer wrapper, ``optimizer-frozen`` after ``get_peft_model`` and ``eval-mode`` with
dropout ``p=0``. Each rule has setups that must trigger it and setups that must not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from torchvision import transforms

transformers = pytest.importorskip("transformers")

import tlaudit  # noqa: E402
from tests.support.hf import tiny_bert, tiny_vit  # noqa: E402
from tlaudit.auditing.report import Severity  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def errors(report: tlaudit.Report, check: str) -> list[str]:
    return [f.message for f in report.by_check(check) if f.severity is Severity.ERROR]


# -- normalization: the image processor as weights= and as the transform ---------------------------


def imagenet_processor(**kwargs: object) -> object:
    return transformers.ViTImageProcessor(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, **kwargs)


def test_an_image_processor_as_weights_is_compared_with_the_transform():
    model, processor = tiny_vit(), imagenet_processor()
    wrong = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    right = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    bad = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=processor, transform=wrong), ["normalization"])
    [message] = errors(bad, "normalization")
    assert "mean [0.5, 0.5, 0.5]" in message and "ViTImageProcessor.image_mean/image_std" in message
    good = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=processor, transform=right), ["normalization"])
    assert good.ok and good.findings == () and "normalization" in good.checks_run


def test_a_processor_that_does_not_normalize_expects_plain_pixels():
    """``do_normalize=False``: the model was trained on 0..1 pixels; ToTensor alone is right, ImageNet's Normalize is not."""
    processor = imagenet_processor(do_normalize=False)
    plain = tlaudit.audit(tlaudit.TransferSetup(model=tiny_vit(), weights=processor, transform=transforms.ToTensor()), ["normalization"])
    assert plain.ok and plain.findings == ()
    normalized = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    bad = tlaudit.audit(tlaudit.TransferSetup(model=tiny_vit(), weights=processor, transform=normalized), ["normalization"])
    assert errors(bad, "normalization") and "do_normalize=False" in errors(bad, "normalization")[0]


def test_a_rescale_factor_other_than_1_over_255_scales_the_statistics():
    """``rescale_factor=1/127.5`` then mean/std 1: on 0..1 pixels that is mean 0.5, std 0.5."""
    processor = transformers.ViTImageProcessor(image_mean=[1.0] * 3, image_std=[1.0] * 3, rescale_factor=1 / 127.5)
    expected = tlaudit.expected_normalization(processor)
    assert expected.mean == pytest.approx((0.5,) * 3) and expected.std == pytest.approx((0.5,) * 3)
    same = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    assert tlaudit.audit(tlaudit.TransferSetup(model=tiny_vit(), weights=processor, transform=same), ["normalization"]).findings == ()


def test_a_checkpoint_folder_and_a_model_loaded_from_it_are_read_as_weights(tmp_path):
    model = tiny_vit()
    model.save_pretrained(tmp_path)
    imagenet_processor().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_mean"] == IMAGENET_MEAN
    loaded = transformers.ViTForImageClassification.from_pretrained(str(tmp_path))
    wrong = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    for weights in (str(tmp_path), loaded):
        report = tlaudit.audit(tlaudit.TransferSetup(model=loaded, weights=weights, transform=wrong), ["normalization"])
        [message] = errors(report, "normalization")
        assert "preprocessor_config.json" in message
    # a model built from a config has no folder: the message says what to pass
    with pytest.raises(
        tlaudit.SetupError, match=r"TransferSetup.weights: model has no pretrained_cfg: ViTForImageClassification .*image processor"
    ):
        tlaudit.TransferSetup(model=model, weights=model)


def test_an_image_processor_as_the_transform_is_read():
    model = tiny_vit()
    right = tlaudit.audit(
        tlaudit.TransferSetup(model=model, weights={"mean": IMAGENET_MEAN, "std": IMAGENET_STD}, transform=imagenet_processor())
    )
    assert "normalization" in right.checks_run and not right.by_check("normalization")
    half = transformers.ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    wrong = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=imagenet_processor(), transform=half), ["normalization"])
    [message] = errors(wrong, "normalization")
    assert message.startswith("the transform normalizes with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]")
    unnormalized = transformers.ViTImageProcessor(do_normalize=False)
    missing = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=imagenet_processor(), transform=unnormalized), ["normalization"])
    assert errors(missing, "normalization")[0].startswith("the transform applies no normalization")


# -- samples: synthesized for HF models, or a tokenizer's dict ---------------------------------------


TRACED = {"frozen-grad", "frozen-changed", "head-size", "trainable-no-grad", "optimizer-state"}
"""Checks whose verdict needs the traced train step."""


def test_a_frozen_classifier_of_a_text_model_is_caught_without_a_sample():
    model = tiny_bert()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.bert.encoder.layer[0].output.parameters():
        p.requires_grad_(True)  # the encoder's last block trains, the classifier stays frozen
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3, optimizer=torch.optim.AdamW(model.parameters(), lr=2e-5)))
    assert errors(report, "head-frozen") == ["head `classifier` has requires_grad=False (`classifier.weight`, `classifier.bias`)"]
    assert TRACED <= set(report.checks_run)


def test_a_vision_model_is_audited_at_its_config_image_size():
    model = tiny_vit()
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4)))
    assert report.findings == () and TRACED <= set(report.checks_run), report.skipped
    assert any("shape (2, 3, 32, 32) (the model's config.image_size)" in n for n in report.notes)


def test_a_tokenizer_dict_is_a_sample_passed_as_keywords():
    model = tiny_bert(num_labels=4)
    ids = torch.randint(100, (4, 10), generator=torch.Generator().manual_seed(0))
    sample = transformers.BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    setup = tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        sample=sample,
        targets=torch.tensor([0, 1, 2, 3]),
        optimizer=torch.optim.AdamW(model.parameters(), lr=2e-5),
    )
    report = tlaudit.audit(setup)
    assert report.findings == () and TRACED | {"label-range"} <= set(report.checks_run), report.skipped
    assert [s.reason for s in report.skipped if s.check == "input-range"] == [
        "the sample is not a float image batch (named tensors: input_ids (4, 10), attention_mask (4, 10))"
    ]
    assert torch.equal(sample["input_ids"], ids)  # the user's batch is untouched
    with pytest.raises(
        tlaudit.SetupError, match=r"TransferSetup.targets: 3 targets \(shape \(3,\)\) for a sample batch of 4 \(input_ids \(4, 10\)"
    ):
        tlaudit.TransferSetup(model=model, sample=sample, targets=torch.tensor([0, 1, 2]))
    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.sample: the tensors hold batches of different sizes"):
        tlaudit.TransferSetup(model=model, sample={"input_ids": ids, "attention_mask": torch.ones(3, 10)})
    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.sample: expected a torch.Tensor or a dict of them .*got list"):
        tlaudit.TransferSetup(model=model, sample=[ids])


# -- head-size from config.num_labels, before any step -----------------------------------------------


def test_num_labels_against_num_classes_is_read_statically():
    model = tiny_bert(num_labels=2)
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3), ["head-size"])
    assert errors(report, "head-size") == [
        "`BertForSequenceClassification.config.num_labels` is 2, expected 3 (num_classes): the head and the model's own loss are sized for 2 classes"
    ]
    right = tlaudit.audit(tlaudit.TransferSetup(model=tiny_bert(num_labels=3), num_classes=3), ["head-size"])
    assert right.findings == () and right.checks_run == ("head-size",)


def test_one_label_for_two_classes_is_regression_to_the_models_own_loss():
    """run_glue_no_trainer.py with ``num_labels=1`` for a binary task: BERT's loss is then MSELoss on
    the integer labels (transformers' ``problem_type`` "regression"), not a binary classifier's BCE."""
    report = tlaudit.audit(tlaudit.TransferSetup(model=tiny_bert(num_labels=1), num_classes=2), ["head-size"])
    assert errors(report, "head-size") == [
        "`BertForSequenceClassification.config.num_labels` is 1 for num_classes 2: the model's own loss (labels=..., "
        "what the Trainer uses) treats the task as regression (MSELoss on the label values), and argmax over one column is always 0"
    ]
    multi_label = tiny_bert(num_labels=1, problem_type="multi_label_classification")  # one logit with BCE: binary
    assert tlaudit.audit(tlaudit.TransferSetup(model=multi_label, num_classes=2), ["head-size"]).errors == []


def test_a_head_resized_by_hand_with_the_config_left_behind_is_a_warning():
    model = tiny_vit(num_labels=10)
    model.classifier = torch.nn.Linear(32, 3)  # config.num_labels still 10: the model's own loss views logits as 10 columns
    [finding] = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3), ["head-size"]).findings
    assert finding.severity is Severity.WARNING and "config.num_labels` is 10, but the head has 3 outputs" in finding.message


def test_a_regression_head_without_num_classes_is_not_judged():
    model = tiny_bert(num_labels=1, problem_type="regression")
    report = tlaudit.audit(tlaudit.TransferSetup(model=model), ["head-size"])
    assert report.findings == ()


# -- schedulers bound through an optimizer wrapper ----------------------------------------------------


@pytest.fixture
def accelerator() -> Iterator[object]:
    """accelerate's ``Accelerator`` on the CPU; its process-wide state is reset afterwards."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState, GradientState

    try:
        yield accelerate.Accelerator(cpu=True)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def test_a_scheduler_bound_to_an_accelerated_optimizer_is_read_on_the_real_one(accelerator):
    model = tiny_vit()
    raw = torch.optim.AdamW(model.parameters(), lr=1e-1)
    wrapped = accelerator.prepare_optimizer(raw)  # accelerate's AcceleratedOptimizer, as the Trainer builds it
    assert type(wrapped).__name__ == "AcceleratedOptimizer" and wrapped.optimizer is raw
    scheduler = transformers.get_linear_schedule_with_warmup(wrapped, num_warmup_steps=2, num_training_steps=10)
    for optimizer in (raw, wrapped):
        report = tlaudit.audit(
            tlaudit.TransferSetup(model=model, num_classes=3, optimizer=optimizer, scheduler=scheduler), ["lr-threshold", "head-frozen"]
        )
        assert errors(report, "lr-threshold") == [
            "group 0 holds 22 pretrained parameters; the scheduler raises its lr to 0.1 > lr_max 0.001 at step 2"
        ]
        assert not report.by_check("head-frozen")  # lr 0 at step 0 of a warm-up is not "cannot train"
    assert scheduler.optimizer is wrapped and raw.param_groups[0]["lr"] == 0.0  # nothing was stepped or rebound
    other = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.scheduler: steps a different optimizer than TransferSetup.optimizer"):
        tlaudit.TransferSetup(model=model, optimizer=other, scheduler=scheduler)


# -- optimizer-frozen after get_peft_model ------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft reads it, transformers 5 deprecates it
def test_peft_adamw_over_model_parameters_is_info_not_a_warning():
    """PEFT's LoRA example builds ``AdamW(params=model.parameters(), lr=lr)`` after ``get_peft_model``
    (https://github.com/huggingface/peft/blob/main/examples/sequence_classification/LoRA.ipynb): the
    frozen base weights sit in the optimizer with no .grad and no state, and never move."""
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_bert(), peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]))
    optimizer = torch.optim.AdamW(params=model.parameters(), lr=3e-4)
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3, optimizer=optimizer), ["optimizer-frozen", "frozen-changed"])
    found = report.by_check("optimizer-frozen")
    assert found and all(f.severity is Severity.INFO for f in found), found
    assert "idle: no .grad and no optimizer state" in found[0].message
    assert report.by_check("frozen-changed") == [] and "frozen-changed" in report.checks_run  # and they did not move in the traced step
    # a stale gradient on a frozen base weight: the optimizer's next step moves it
    query = model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight
    query.grad = torch.ones_like(query)
    stale = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=3, optimizer=optimizer), ["optimizer-frozen"])
    assert [f.severity for f in stale.findings] == [Severity.WARNING, Severity.INFO]
    assert "with a .grad or optimizer state" in stale.findings[0].message and "query.base_layer.weight" in stale.findings[0].message


# -- eval-mode with dropout p=0 -----------------------------------------------------------------------


def predict_without_eval(model: torch.nn.Module, x: torch.Tensor) -> object:
    with torch.no_grad():
        return model(pixel_values=x).logits


def test_dropout_p0_in_training_mode_at_inference_is_not_an_error():
    model = tiny_vit()  # ViTConfig's hidden_dropout_prob and attention_probs_dropout_prob are 0.0
    report = tlaudit.audit(
        tlaudit.TransferSetup(model=model, sample=torch.randn(2, 3, 32, 32), predict=predict_without_eval), ["eval-mode"]
    )
    [finding] = report.findings
    assert finding.severity is Severity.WARNING
    assert "no dropout or BatchNorm is affected (2 dropout layers with p=0, which change nothing)" in finding.message
    assert "modules that read self.training are" in finding.message


def test_real_dropout_in_training_mode_at_inference_is_an_error():
    model = tiny_vit(hidden_dropout_prob=0.1)
    report = tlaudit.audit(
        tlaudit.TransferSetup(model=model, sample=torch.randn(2, 3, 32, 32), predict=predict_without_eval), ["eval-mode"]
    )
    assert [f.severity for f in report.findings] == [Severity.ERROR]
    assert "2 dropout layers active (`vit.embeddings.dropout`, `vit.layers.0.dropout`)" in report.findings[0].message


def test_only_mode_free_torch_layers_in_training_mode_are_info():
    model = tiny_vit()
    model.classifier = torch.nn.Sequential(torch.nn.Dropout(0.0), torch.nn.Linear(32, 3))

    def predict(m: torch.nn.Module, x: torch.Tensor) -> object:
        m.eval()
        m.classifier.train()  # only the p=0 dropout and a Linear in training mode
        with torch.no_grad():
            return m(pixel_values=x).logits

    [finding] = tlaudit.audit(tlaudit.TransferSetup(model=model, sample=torch.randn(2, 3, 32, 32), predict=predict), ["eval-mode"]).findings
    assert finding.severity is Severity.INFO and "none of them computes differently there" in finding.message
