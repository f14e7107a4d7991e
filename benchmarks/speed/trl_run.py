"""One TRL SFTTrainer + PEFT training run, for benchmarks/speed/compare.py (runs in the TRL virtual environment).

    python trl_run.py --model DIR --train train.jsonl --out OUT --variant sensible|packing|defaults|bf16 [--full]

Trains on the `messages` rows with the loss on assistant turns only (a copy of the chat template with generation
tags marks them, the mechanism TRL documents for assistant_only_loss), the same effective batch, learning rate,
schedule and epochs as tunesmith, then saves the adapter (or model) and writes OUT/result.json.
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
from trl import SFTConfig, SFTTrainer

# SmolLM2's ChatML template with {% generation %} around each assistant answer and its <|im_end|> (not the newline
# after it): exactly the tokens tunesmith trains, so both tools optimise the same loss.
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=["sensible", "packing", "defaults", "bf16"], default="sensible")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.chat_template = TEMPLATE
    gpu = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    data = load_dataset("json", data_files=args.train, split="train")
    sensible = args.variant != "defaults"
    config = SFTConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.batch // args.micro,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # transformers 5: a float below 1 is a share of the steps
        num_train_epochs=1,
        max_steps=args.max_steps,
        max_length=args.max_length,
        assistant_only_loss=True,
        packing=args.variant == "packing",
        # TRL's own defaults are bf16 autocast and gradient checkpointing. Sensible settings drop the checkpointing
        # and, on a CPU, use fp32; on a GPU they keep bf16. `bf16`: bf16 autocast without checkpointing, the same
        # precision as tunesmith's default on a CPU with native bf16.
        bf16=gpu or args.variant in ("defaults", "bf16"),
        gradient_checkpointing=not sensible,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        use_cpu=not gpu,
        dataloader_num_workers=0,
    )
    peft = None if args.full else LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=peft)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = trainer.train()
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(out / "final")
    tokenizer.save_pretrained(out / "final")
    losses = [x["loss"] for x in trainer.state.log_history if "loss" in x]
    info = {
        "train_seconds": seconds,
        "train_runtime": result.metrics.get("train_runtime"),
        "steps": trainer.state.global_step,
        "losses": losses,
        "variant": args.variant,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
    }
    (out / "result.json").write_text(json.dumps(info, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
