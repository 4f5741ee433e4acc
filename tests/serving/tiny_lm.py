"""A tiny randomly initialised Hugging Face causal LM, built in a test's tmp folder (no download).

GPT-2 architecture (1 layer, 2 heads, 32 wide) and a byte-level BPE tokenizer trained with
``tokenizers`` on a few JSON plans, saved with ``save_pretrained`` as any HF model would be, so
the loading code under test is the real one. Its answers are garbage by design.
"""

from __future__ import annotations

from pathlib import Path

PLANS = [
    '[{"action": "time_shift", "params": {"shift_ms": -240.0}}]',
    '[{"action": "wiener_filter", "params": {"alpha": 0.9, "min_prior_snr_db": -25.0}}]',
    '[{"action": "fill_blanks", "params": {}}, {"action": "volume_adjust", "params": {"target_lufs": -23.0}}]',
    "[]",
    "Audio description: speech. Visual description: a face. Answer with only a JSON list.",
]


def build_tiny_causal_lm(folder: Path, *, seed: int = 0, vocab_size: int = 300) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(PLANS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<eos>", pad_token="<eos>")
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    eos = fast.convert_tokens_to_ids("<eos>")
    config = GPT2Config(vocab_size=len(fast), n_layer=1, n_head=2, n_embd=32, n_positions=4096,
                        bos_token_id=eos, eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def teach_answer(folder: Path, prompt: str, answer: str, *, steps: int = 300, seed: int = 0) -> Path:
    """Overfit the tiny model in ``folder`` until greedy decoding after ``prompt`` says ``answer``
    (a model that 'knows' one plan, to test the success path); saved in place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    prompt_ids = tok(prompt)["input_ids"]
    answer_ids = tok(answer)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100  # learn the answer only
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    start = len(prompt_ids)
    for _ in range(steps):
        out = model(input_ids=ids, labels=labels)
        # greedy decoding follows the taught path once every answer token is the argmax
        if bool((out.logits[0, start - 1:-1].argmax(-1) == ids[0, start:]).all()) and out.loss.item() < 0.5:
            break
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval().save_pretrained(folder)
    return folder
