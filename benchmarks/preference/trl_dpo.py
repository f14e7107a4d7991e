"""One TRL DPOTrainer + PEFT run for benchmarks/preference/speed.py (runs in the TRL virtual environment).

    python trl_dpo.py --model DIR --train pairs.jsonl --held held.jsonl --out OUT [--bf16]

The rows are conversational pairs (prompt messages, chosen and rejected assistant messages); the same LoRA, batch,
learning rate, schedule, beta and max_length as the tunesmith run. The reference is the model with the adapter
switched off, computed on the fly as TRL does by default. Writes OUT/result.json with the training seconds and the
held-out DPO loss after training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--train", "--held", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (tunesmith's precision on this CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    train = load_dataset("json", data_files=args.train, split="train")
    held = load_dataset("json", data_files=args.held, split="train")
    config = DPOConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=args.micro,
        per_device_eval_batch_size=args.micro,
        gradient_accumulation_steps=args.batch // args.micro,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        num_train_epochs=1,
        beta=args.beta,
        max_length=args.max_length,
        bf16=args.bf16,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=train, eval_dataset=held, processing_class=tokenizer, peft_config=peft
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    metrics = trainer.evaluate()
    info = {
        "train_seconds": seconds,
        "steps": trainer.state.global_step,
        "held_out_loss": metrics.get("eval_loss"),
        "held_out_reward_accuracy": metrics.get("eval_rewards/accuracies"),
        "losses": [x["loss"] for x in trainer.state.log_history if "loss" in x],
    }
    (out / "result.json").write_text(json.dumps(info, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
