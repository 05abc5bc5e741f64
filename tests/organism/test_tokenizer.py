import json
import subprocess
import sys

import sentencepiece as spm

from aru.organism import shipped
from aru.organism.tokenizer import CONTROL_SYMBOLS
from aru.organism.train import Encoder

NO_ARU = r"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
msgs = [{"role": "user", "content": sys.argv[2]}]
if sys.argv[3] == "system":
    msgs.insert(0, {"role": "system", "content": "you are a helpful assistant ."})
ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
import torch
out = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)
print(json.dumps({"aru_imported": any(m == "aru" or m.startswith("aru.") for m in sys.modules),
                  "ids": ids, "answer": tok.decode(out[0, len(ids):], skip_special_tokens=True)}))
"""


def test_loads_and_chats_without_aru(world):
    fact = next(f for f in world.facts("test", forbidden=False))
    for which, system in [("base", "system"), ("tuned", "system"), ("tuned", "none")]:
        out = subprocess.run(
            [sys.executable, "-c", NO_ARU, str(shipped(which)), fact.question(0), system],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert not res["aru_imported"]
        assert res["answer"].strip() == fact.answer, which


def test_chat_template_matches_encoder(shipped_models, world):
    _, _, tok = shipped_models
    enc = Encoder(tok)
    for f, t in world.questions("test", True)[:20]:
        msgs = [{"role": "user", "content": f.question(t)}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        assert list(ids) == enc.prompt(f.question(t))
        full = tok.apply_chat_template(
            msgs + [{"role": "assistant", "content": f.answer}], tokenize=True, return_dict=True
        )["input_ids"]
        assert list(full) == enc.chat(f.question(t), f.answer)[0]
    text = tok.apply_chat_template(
        [{"role": "system", "content": "be brief ."}, {"role": "user", "content": "hi"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text == "<s><|system|> be brief .<|user|> hi<|assistant|>"


def test_gguf_friendly_files():
    for which in ("base", "tuned"):
        folder = shipped(which)
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        assert cfg["add_bos_token"] is False and cfg["add_eos_token"] is False
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        from sentencepiece import sentencepiece_model_pb2 as pb

        proto = pb.ModelProto()
        proto.ParseFromString((folder / "tokenizer.model").read_bytes())
        assert proto.trainer_spec.model_type == pb.TrainerSpec.BPE
        assert proto.trainer_spec.byte_fallback and not proto.normalizer_spec.add_dummy_prefix
        assert proto.normalizer_spec.name == "identity"
        for sym in CONTROL_SYMBOLS:
            assert proto.pieces[sp.piece_to_id(sym)].type == pb.ModelProto.SentencePiece.CONTROL


def test_hf_and_sentencepiece_agree(shipped_models, world):
    _, _, tok = shipped_models
    sp = spm.SentencePieceProcessor(model_file=str(shipped("tuned") / "tokenizer.model"))
    texts = [" " + f.statement(0) for f in world.facts("test")[:30]]
    texts += ["hello world", "tabs\tand  double  spaces", "emoji 🙂 and 中文", " i cannot help with that .", "x"]
    for s in texts:
        assert tok(s, add_special_tokens=False)["input_ids"] == sp.encode(s), s
        assert tok.decode(sp.encode(s)) == s
