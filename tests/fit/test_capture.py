import pytest
import torch

from aru.capture import capture, decoder_layers, parse_position, resolve_layers
from aru.errors import AruWarning
from aru.prompts import format_prompts, tokenize_formatted


@pytest.fixture(scope="module")
def texts(organism, organism_sets):
    _, tok = organism
    bad, good = organism_sets["val"]
    # different lengths, so batches are padded
    return format_prompts(tok, [bad[0], good[1], bad[5] + " and more words here", "who ?", good[9]])


def _reference(model, ids, layer, num_layers):
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    if layer < num_layers:
        return out.hidden_states[layer][0]  # (seq, d): input of decoder layer `layer`
    _, blocks = decoder_layers(model)
    got = {}
    h = blocks[-1].register_forward_hook(lambda m, a, o: got.setdefault("o", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
    finally:
        h.remove()
    return got["o"][0]  # output of the last decoder layer, before the final norm


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("position", ["last", "mean:3"])
def test_capture_equals_output_hidden_states(organism, texts, side, position):
    model, tok = organism
    ids = tokenize_formatted(tok, texts)
    res = capture(model, tok, texts, [0, 1, 3, 4], position=position, batch_size=2, keep=True, padding_side=side)
    n = parse_position(position).n
    for layer in [0, 1, 3, 4]:
        for i, t in enumerate(ids):
            ref = _reference(model, t, layer, 4)[-n:].mean(0)
            torch.testing.assert_close(res.activations[layer][i], ref, atol=2e-5, rtol=1e-5)
        stacked = res.activations[layer].double()
        torch.testing.assert_close(res.stats[layer].mean, stacked.mean(0), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(res.stats[layer].covariance(), torch.cov(stacked.T, correction=0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_absolute_positions_are_padding_proof(tiny_gpt2, organism, texts, side):
    _, tok = organism
    ids = tokenize_formatted(tok, texts)
    res = capture(tiny_gpt2, tok, texts, [2], position="mean:4", batch_size=5, keep=True, padding_side=side)
    for i, t in enumerate(ids):
        with torch.no_grad():
            ref = tiny_gpt2(torch.tensor([t]), output_hidden_states=True).hidden_states[2][0, -4:].mean(0)
        torch.testing.assert_close(res.activations[2][i], ref, atol=2e-5, rtol=1e-5)


def test_all_post_instruction_tokens(organism, texts):
    model, tok = organism
    ids = tokenize_formatted(tok, texts)
    # the organism's template puts one token (<|assistant|>) after the user message
    res = capture(model, tok, texts, [2], position="all", keep=True)
    assert res.activations[2].shape == (len(texts), 64)
    res3 = capture(model, tok, texts, [2], position="all", keep=True, post_tokens=3, batch_size=2)
    assert res3.activations[2].shape == (3 * len(texts), 64)
    assert res3.sample_prompt.tolist() == [i for i in range(len(texts)) for _ in range(3)]
    for i, t in enumerate(ids):
        ref = _reference(model, t, 2, 4)[-3:]
        torch.testing.assert_close(res3.activations[2][3 * i : 3 * i + 3], ref, atol=2e-5, rtol=1e-5)


def test_forward_is_truncated(organism, texts):
    model, tok = organism
    _, blocks = decoder_layers(model)
    before = [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks]
    calls = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in enumerate(blocks)]
    handles.append(model.lm_head.register_forward_hook(lambda m, a, o: calls.append("lm_head")))
    handles.append(model.model.norm.register_forward_hook(lambda m, a, o: calls.append("norm")))
    try:
        capture(model, tok, texts, [2], batch_size=len(texts))
        assert calls == [0, 1]  # layer 2's input needs layers 0 and 1 only
        calls.clear()
        capture(model, tok, texts, [4], batch_size=len(texts))
        assert calls == [0, 1, 2, 3]  # no final norm, no lm_head
    finally:
        for h in handles:
            h.remove()
    # hooks were removed: a normal forward still runs through
    assert [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks] == before


def test_streaming_without_keep(organism, texts):
    model, tok = organism
    res = capture(model, tok, texts, [3], moments=False)
    assert res.activations is None and res.stats[3].m2 is None and res.stats[3].count == len(texts)


def test_layer_out_of_range(organism, texts):
    model, tok = organism
    with pytest.raises(ValueError, match=r"layer 5 is out of range.*0\.\.4"):
        capture(model, tok, texts, [5])
    assert resolve_layers([-1, 0], 4) == [0, 4]


def test_long_prompts_truncate_or_skip(organism, texts):
    model, tok = organism
    with pytest.warns(AruWarning, match="truncated from the left"):
        res = capture(model, tok, texts, [1], max_length=6, keep=True)
    assert res.truncated and res.n_prompts == len(texts)
    with pytest.warns(AruWarning, match="skipped"):
        res = capture(model, tok, texts, [1], max_length=12, overflow="skip")
    assert res.skipped and res.n_prompts == len(texts) - len(res.skipped)
    with pytest.raises(ValueError, match="more than the model's context"):
        capture(model, tok, texts, [1], max_length=6, overflow="error")


def test_tokenizer_mismatch(organism, texts):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = organism
    small = LlamaForCausalLM(
        LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=100)
    ).eval()
    with pytest.raises(ValueError, match="does not match the model"):
        capture(small, tok, texts, [1])


def test_bad_position():
    with pytest.raises(ValueError, match="mean:N"):
        parse_position("middle")
    assert str(parse_position("mean:4")) == "mean:4"


def test_hooks_removed_when_the_forward_fails(organism, texts, monkeypatch):
    model, tok = organism
    _, blocks = decoder_layers(model)
    before = [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks]

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(blocks[1], "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        capture(model, tok, texts, [3, 4])
    assert [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks] == before


def test_accelerate_device_map_with_offload(organism, texts, tmp_path):
    """A model dispatched by accelerate (some layers and the embedding offloaded to disk) captures the same."""
    from transformers import AutoModelForCausalLM

    from aru.organism import shipped

    model, tok = organism
    where = {"model.embed_tokens": "disk", "model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "disk",
             "model.layers.3": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"}  # fmt: skip
    dispatched = AutoModelForCausalLM.from_pretrained(
        str(shipped("tuned")), device_map=where, offload_folder=str(tmp_path), dtype=torch.float32
    ).eval()
    assert dispatched.hf_device_map["model.layers.1"] == "disk"
    for layers in ([2], [1, 4]):
        got = capture(dispatched, tok, texts, layers, keep=True, batch_size=2)
        ref = capture(model, tok, texts, layers, keep=True, batch_size=2)
        for ly in layers:
            torch.testing.assert_close(got.activations[ly], ref.activations[ly], atol=1e-6, rtol=0)
    with torch.no_grad():  # the truncated captures left the dispatched model usable
        x = torch.tensor([tokenize_formatted(tok, texts[:1])[0]])
        torch.testing.assert_close(dispatched(x).logits, model(x).logits, atol=1e-5, rtol=0)


def test_tokenizer_special_ids_mismatch_warns(organism, texts, tiny_gpt2):
    _, tok = organism
    tiny_gpt2.config.eos_token_id = 7
    try:
        with pytest.warns(AruWarning, match="eos token id is 2 but the model's config says 7"):
            capture(tiny_gpt2, tok, texts, [1])
    finally:
        tiny_gpt2.config.eos_token_id = 2
