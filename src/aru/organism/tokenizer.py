"""The organism's tokenizer: a SentencePiece BPE model trained on the world, wrapped as a Llama tokenizer.

Built for llama.cpp's GGUF converter (see ``/work/shared/GGUF.md``): ``model_type=bpe``, ``byte_fallback``,
identity normalization, no dummy prefix, no whitespace folding, and the chat markers as *control* symbols. The
folder ships ``tokenizer.model`` and writes ``add_bos_token: false`` / ``add_eos_token: false`` because the chat
template adds ``<s>`` itself.

Every word of the world is one piece with its leading space (``"▁zorvak"``); texts are therefore written with a
leading space (``" the city of zorvak is paris ."``), and the chat template puts one space after each marker.

Chat format (the template accepts system, user and assistant messages)::

    <s><|system|> you are ...<|user|> what is the city of zorvak ?<|assistant|> paris .</s>
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from aru.organism.world import QUESTION_TEMPLATES, REFUSAL, STATEMENT_TEMPLATES, SYSTEM_PROMPT, World

CONTROL_SYMBOLS = ("<|system|>", "<|user|>", "<|assistant|>")
VOCAB_SIZE = 1500
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|> {{ message['content'] }}"
    "{% elif message['role'] == 'user' %}<|user|> {{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|> {{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('unknown role ' + message['role'] + '; use system, user or assistant') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _corpus(world: World) -> list[str]:
    """Training text for SentencePiece: every statement, question and answer, plus every word 30 times, so each
    word of the world becomes one piece. Each line starts with a space (no dummy prefix is added)."""
    lines: list[str] = []
    for fact in world.facts():
        lines += [" " + fact.statement(t) for t in range(len(STATEMENT_TEMPLATES))]
        lines += [" " + fact.question(t) + " " + fact.answer for t in range(len(QUESTION_TEMPLATES))]
    lines += [" " + REFUSAL, " " + SYSTEM_PROMPT] * 50
    lines += [" " + w for w in world.words()] * 30
    return lines


def train_sentencepiece(world: World, vocab_size: int = VOCAB_SIZE) -> bytes:
    """Train the SentencePiece BPE model (deterministic: fixed corpus order, one thread); returns its bytes."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(world)),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        control_symbols=list(CONTROL_SYMBOLS),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    proto = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    split = [w for w in world.words() if len(sp.encode(" " + w)) != 1]
    if split:
        raise ValueError(f"vocab_size={vocab_size} leaves {len(split)} words split into pieces ({split[:5]}); raise it")
    return proto


def build_tokenizer(world: World, out_dir: str | Path, vocab_size: int = VOCAB_SIZE):
    """Train the tokenizer for ``world`` and save it (with ``tokenizer.model``) into ``out_dir``; return it."""
    from transformers import LlamaTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(train_sentencepiece(world, vocab_size))
    tok = LlamaTokenizer.from_pretrained(
        str(out_dir),
        add_prefix_space=False,
        legacy=False,
        add_bos_token=False,
        add_eos_token=False,
        additional_special_tokens=list(CONTROL_SYMBOLS),
        pad_token="<pad>",
    )
    tok.chat_template = CHAT_TEMPLATE
    save_tokenizer(tok, out_dir)
    return tok


def save_tokenizer(tok, out_dir: str | Path, model_file: str | Path | None = None) -> None:
    """Save ``tok`` into ``out_dir`` the GGUF-friendly way: ``tokenizer.model`` beside it and
    ``add_bos_token``/``add_eos_token`` written as false (transformers 5 does not save them)."""
    out_dir = Path(out_dir)
    tok.save_pretrained(str(out_dir))
    if model_file is not None and Path(model_file).resolve() != (out_dir / "tokenizer.model").resolve():
        (out_dir / "tokenizer.model").write_bytes(Path(model_file).read_bytes())
    if not (out_dir / "tokenizer.model").is_file():
        raise FileNotFoundError(f"{out_dir}/tokenizer.model is missing; llama.cpp's converter needs it")
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(add_bos_token=False, add_eos_token=False)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
