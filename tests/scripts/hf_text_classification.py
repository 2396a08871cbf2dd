"""Hugging Face's text-classification example, small: a BERT "checkpoint" (a tiny ``BertConfig``'s own
init, saved locally), ``AutoModelForSequenceClassification.from_pretrained(num_labels=...)``, tokenized
examples (``input_ids``, ``token_type_ids``, ``attention_mask``, ``label``), ``default_data_collator``,
and ``Trainer`` with warm-up and evaluation.

Written the way https://github.com/huggingface/transformers/blob/main/examples/pytorch/text-classification/run_glue.py
is written; the "tokenizer" is synthetic token ids below the vocabulary size (nothing is downloaded).

Usage: hf_text_classification.py CHECKPOINT_DIR [--bug num-labels] [--audit-callback] [--steps N]
"""

import argparse
import os

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["num-labels"])
parser.add_argument("--audit-callback", action="store_true", help="add tlaudit's TransferAuditCallback")
parser.add_argument("--steps", type=int, default=4)
args = parser.parse_args()

model_name_or_path = os.path.join(args.checkpoint_dir, "tiny-bert")
if not os.path.exists(model_name_or_path):
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32
    )
    pretrained = BertModel(config)
    with torch.no_grad():  # trained norms, as a real checkpoint has them (an untrained init looks unloaded)
        for module in pretrained.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.1)
    pretrained.save_pretrained(model_name_or_path)
torch.manual_seed(0)


class TokenizedDataset(torch.utils.data.Dataset):
    def __init__(self, size: int, seed: int, num_labels: int, length: int = 12) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, 100, (size, length), generator=gen)
        self.attention_mask = torch.ones(size, length, dtype=torch.long)
        self.attention_mask[:, length - 3 :] = torch.randint(0, 2, (size, 3), generator=gen)
        self.labels = torch.arange(size) % num_labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.input_ids[i],
            "token_type_ids": torch.zeros_like(self.input_ids[i]),
            "attention_mask": self.attention_mask[i],
            "label": self.labels[i],
        }


label_list = ["negative", "neutral", "positive"]
train_dataset, eval_dataset = TokenizedDataset(16, 0, len(label_list)), TokenizedDataset(8, 1, len(label_list))
num_labels = 2 if args.bug == "num-labels" else len(label_list)  # the seeded mistake: a binary head for three classes
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=num_labels)
model.config.label2id = {l: i for i, l in enumerate(label_list[:num_labels])}
model.config.id2label = {i: l for l, i in model.config.label2id.items()}

training_args = TrainingArguments(
    output_dir=os.path.join(args.checkpoint_dir, "out-text"),
    max_steps=args.steps,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    learning_rate=2e-5,
    warmup_steps=1,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    seed=0,
)
callbacks = []
if args.audit_callback:
    from tlaudit.integrations.huggingface import TransferAuditCallback

    callbacks.append(TransferAuditCallback())
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    data_collator=default_data_collator,
    callbacks=callbacks,
)
trainer.train()
metrics = trainer.evaluate()
print(f"trained {trainer.state.global_step} steps, eval loss {metrics['eval_loss']:.4f}")
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
