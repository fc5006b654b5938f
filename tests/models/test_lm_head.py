"""LMHead: loss only on targets, label smoothing, generation modes, streaming, LoRA, special tokens."""

import pytest
import torch

from regionlib.errors import ConfigError, RegionLibError
from regionlib.models import LMConfig, LMHead, build_lm_head, builtin_tokenizer, train_bpe_tokenizer


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return build_lm_head(LMConfig(template="{visual} Describe the masked region in detail."), builtin_tokenizer())


def _loss(head, contexts, targets, **kwargs):
    """Teacher-forced cross-entropy of ``targets`` after ``contexts`` (as `Captioner.forward` computes it)."""
    out, labels = head.teacher_forced(contexts, None, targets)
    return head.token_loss(out.logits, labels, **kwargs)


def test_loss_counts_only_target_tokens(head):
    prefix = torch.randn(2, 3, head.width)
    out, labels = head.teacher_forced(head.contexts(prefix), None, ["a red circle", "blue"], all_positions=True)
    n_ctx = head.contexts(prefix).shape[1]
    assert (labels[:, :n_ctx] == -100).all()
    # targets + eos, the rest ignored
    assert int((labels[0] != -100).sum()) == len(head.token_ids("a red circle")) + 1
    assert int((labels[1] != -100).sum()) == 2
    assert labels[1, n_ctx + 1] == head.tokenizer.eos_token_id
    # reference: plain cross-entropy over the target positions only
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    ref = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(head.token_loss(out.logits, labels, 0.0), ref)
    smoothed = _loss(head, head.contexts(prefix), ["a red circle", "blue"], label_smoothing=0.1)
    assert not torch.allclose(smoothed, ref)
    n_tokens = int((labels[:, 1:] != -100).sum())
    summed = head.token_loss(out.logits, labels, 0.1, reduction="sum")
    torch.testing.assert_close(summed, head.token_loss(out.logits, labels, 0.1) * n_tokens)
    with pytest.raises(RegionLibError, match="reduction"):
        head.token_loss(out.logits, labels, reduction="none")


def test_generation_modes_and_errors(head):
    ctx = head.contexts(torch.randn(2, 4, head.width))
    greedy = head.generate(ctx, max_new_tokens=6)
    assert greedy == head.generate(ctx, max_new_tokens=6)
    assert greedy == [head.decode(ids) for ids in head.generate_ids(ctx, max_new_tokens=6)]
    assert len(head.generate(ctx, max_new_tokens=6, num_beams=3)) == 2
    a = head.generate(ctx, max_new_tokens=6, do_sample=True, temperature=1.5, seed=1)
    assert a == head.generate(ctx, max_new_tokens=6, do_sample=True, temperature=1.5, seed=1)
    for bad in (0, -3):
        with pytest.raises(RegionLibError, match="max_new_tokens"):
            head.generate(ctx, max_new_tokens=bad)
        with pytest.raises(RegionLibError, match="max_new_tokens"):
            list(head.stream(ctx[:1], max_new_tokens=bad))
    with pytest.raises(RegionLibError, match="targets"):
        _loss(head, ctx, ["only one"])
    with pytest.raises(RegionLibError, match="prefix"):
        head.contexts(torch.randn(2, 4, head.width + 1))
    with pytest.raises(ConfigError, match="template"):
        LMHead(head.lm, head.tokenizer, template="no slot")


def test_stream_pieces_join_to_the_greedy_caption(head):
    ctx = head.contexts(torch.randn(1, 4, head.width))
    pieces = list(head.stream(ctx, max_new_tokens=8))
    assert "".join(pieces).strip() == head.generate(ctx, max_new_tokens=8)[0]


def test_left_padding_does_not_change_generation(head):
    ctx = head.contexts(torch.randn(2, 4, head.width))
    short = ctx[1, 3:]
    embeds, mask = LMHead.pad_left([ctx[0], short])
    assert mask[1, :3].sum() == 0
    batched = head.generate_ids(embeds, mask, max_new_tokens=6)
    assert batched[1] == head.generate_ids(short[None], max_new_tokens=6)[0]
    assert batched[0] == head.generate_ids(ctx[:1], max_new_tokens=6)[0]


def test_special_tokens_resize_and_survive_decoding():
    head = build_lm_head(LMConfig(template="{visual}"), builtin_tokenizer())
    n = head.lm.get_input_embeddings().num_embeddings
    ids = head.add_special_tokens(["<SEG_t>", "<p>"])
    assert head.lm.get_input_embeddings().num_embeddings == n + 2 == len(head.tokenizer)
    assert head.token_ids("<p>red</p><SEG_t>")[0] == ids[1]  # never split
    assert "<SEG_t>" in head.decode(head.token_ids("a red circle <SEG_t>"))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_lora_trains_adapters_only_and_leaves_base_weights(arch):
    torch.manual_seed(0)
    targets = ["c_attn"] if arch == "gpt2" else ["q_proj", "v_proj"]
    head = build_lm_head(LMConfig(arch=arch, lora_r=4, lora_targets=tuple(targets)), builtin_tokenizer())
    base = {k: v.clone() for k, v in head.base_state_dict().items()}
    trainable = [n for n, p in head.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ctx = head.contexts(torch.randn(2, 3, head.width))
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-2)
    before = float(_loss(head, ctx, ["a red circle", "a blue square"]))
    for _ in range(5):
        loss = _loss(head, ctx, ["a red circle", "a blue square"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(_loss(head, ctx, ["a red circle", "a blue square"])) < before
    after = head.base_state_dict()
    assert after.keys() == base.keys()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    with pytest.raises(ConfigError, match="target_modules"):
        build_lm_head(LMConfig(arch=arch, lora_r=4, lora_targets=("no_such_module",)), builtin_tokenizer())


def test_bpe_tokenizer_round_trip():
    tok = train_bpe_tokenizer(["a red striped circle in the top left of the image."] * 5, vocab_size=300)
    head = build_lm_head(LMConfig(template="{visual}"), tok)
    text = "a red striped circle"
    assert head.decode(head.token_ids(text)) == text
    assert len(head.generate(head.contexts(torch.randn(1, 2, head.width)), max_new_tokens=3)) == 1


def test_out_of_vocabulary_target_words_are_warned_about_once(head):
    with pytest.warns(UserWarning, match="outside the tokenizer's vocabulary.*zorgblat"):
        ids = head.target_ids(["a red zorgblat"])
    assert head.tokenizer.unk_token_id in ids[0]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        head.target_ids(["a red zorgblat", "a red circle"])  # known now, in-vocabulary: silent


def test_mean_log_prob_is_minus_the_unsmoothed_loss(head):
    ctx = head.contexts(torch.randn(1, 3, head.width))
    nll = _loss(head, ctx, ["a red circle"], label_smoothing=0.0)
    torch.testing.assert_close(head.mean_log_prob(ctx, ["a red circle"]), -nll.detach()[None], atol=1e-5, rtol=0)


def _bos_chat_tokenizer():
    """A byte-level BPE tokenizer that adds BOS to plain text and has a chat template (Llama style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["select the masks that match", "a red circle and a blue square"],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<|eot|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   additional_special_tokens=["<|eot|>"])
    fast.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}<|eot|>{% endfor %}"
                          "{% if add_generation_prompt %}[assistant]{% endif %}")
    return fast


def test_whole_contexts_start_with_bos_and_follow_the_chat_template():
    """Bug: contexts never started with BOS and ignored the tokenizer's chat template; `context(parts)`
    (RAS / grounded captioning) and `contexts(prefix)` must both render the user turn with the slots kept."""
    tok = _bos_chat_tokenizer()
    head = build_lm_head(LMConfig(template="{visual} Describe the masked region in detail."), tok)
    a, b = torch.randn(2, head.width), torch.randn(1, head.width)
    ctx = head.context(["Select: ", a, " and ", b])
    rendered = tok.apply_chat_template([{"role": "user", "content": "Select: {visual} and {visual}"}], tokenize=False,
                                       add_generation_prompt=True)
    pieces = [tok(p, add_special_tokens=False)["input_ids"] for p in rendered.split("{visual}")]
    pieces[0] = [tok.bos_token_id] + pieces[0]  # the template's text has no BOS of its own: prepended once
    emb = head.lm.get_input_embeddings().weight
    want = torch.cat([emb[pieces[0]], a, emb[pieces[1]], b, emb[pieces[2]]])
    assert torch.equal(ctx, want)
    same, starts = head.context(["Select: ", a, " and ", b], offsets=True)
    assert torch.equal(same, ctx) and starts == [len(pieces[0]), len(pieces[0]) + 2 + len(pieces[1])]
    assert torch.equal(ctx[starts[1]], b[0])
    before, _ = head.template_ids()
    assert before[0] == tok.bos_token_id and before.count(tok.bos_token_id) == 1
    no_chat = build_lm_head(LMConfig(chat_template=False), _bos_chat_tokenizer())
    assert no_chat.template_ids()[0] == [tok.bos_token_id]  # plain text: BOS, then the visual slot


def test_generation_stops_at_the_generation_configs_eos():
    """Bug: generation stopped only at the tokenizer's eos, not at the generation config's (end of turn)."""
    tok = _bos_chat_tokenizer()
    head = build_lm_head(LMConfig(), tok)
    eot = tok.convert_tokens_to_ids("<|eot|>")
    head.lm.generation_config.eos_token_id = [tok.eos_token_id, eot]
    assert head.eos_ids == [tok.eos_token_id, eot]
    seen = {}

    def fake_generate(**kwargs):
        seen.update(kwargs)
        return torch.tensor([[5, 6, eot, 7], [8, tok.eos_token_id, 9, 9]])

    head.lm.generate = fake_generate
    assert head.generate_ids(torch.randn(2, 3, head.width)) == [[5, 6], [8]]
    assert seen["eos_token_id"] == [tok.eos_token_id, eot]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_logits_only_at_the_target_positions(arch):
    """Bug caught: the vocabulary projection run over every context position (only the T + 1 positions
    that predict the targets are needed), or the kept logits misaligned with their labels."""
    head = build_lm_head(LMConfig(arch=arch, template="{visual} Describe the masked region in detail."),
                         builtin_tokenizer())
    prefix = torch.randn(2, 9, head.width)
    ctx = head.contexts(prefix)
    targets = ["a red circle", "a small blue square with a dark outline"]
    kept, labels = head.teacher_forced(ctx, None, targets)
    full, full_labels = head.teacher_forced(ctx, None, targets, all_positions=True)
    t = max(len(x) for x in head.target_ids(targets))
    assert kept.logits.shape[1] == labels.shape[1] == t + 1 < full.logits.shape[1]
    torch.testing.assert_close(kept.logits, full.logits[:, -(t + 1):], atol=1e-5, rtol=0)
    torch.testing.assert_close(head.token_loss(kept.logits, labels), head.token_loss(full.logits, full_labels))
    assert head.mean_log_prob(ctx, targets).shape == (2,)
