"""Understanding heads on frozen codes: captioning, VQA, grounding (issue 'Understanding')."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lgvq.downstream.captioning import IGNORE, CaptionModel, caption_labels
from lgvq.downstream.frontend import CodeFrontEnd, sincos_2d, standardized
from lgvq.downstream.grounding import CellGroundingModel, GroundingModel, box_losses
from lgvq.downstream.task import HeadTask
from lgvq.downstream.vocab import AnswerVocab, WordVocab, pad_batch
from lgvq.downstream.vqa import VQAModel
from lgvq.io import ArtifactError
from lgvq.metrics.grounding import cxcywh_norm_to_xywh, xywh_to_cxcywh_norm

GRID = (3, 3)


def frontend(width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return CodeFrontEnd(torch.randn(16, 8, generator=g), GRID, width)


def codes(n, seed=1):
    return torch.randint(0, 16, (n, *GRID), generator=torch.Generator().manual_seed(seed))


def fit(model, loss, steps, lr=3e-3):
    torch.manual_seed(0)
    task = HeadTask(model, lambda m, _: loss(m), lr=lr, weight_decay=0.0)
    for step in range(steps):
        task.train_step(None, step)
    return model.eval()


# --- vocabularies and boxes -------------------------------------------------------------------

def test_word_vocab_round_trips_and_stops_at_eos():
    v = WordVocab.build(["A red circle.", "a blue square"])
    ids = v.encode("a red square!", 10, bos=True, eos=True)
    assert ids[0] == WordVocab.BOS and ids[-1] == WordVocab.EOS
    assert v.decode(ids + [v.stoi["blue"]]) == "a red square"
    assert v.encode("a purple circle", 10) == [v.stoi["a"], WordVocab.UNK, v.stoi["circle"]]
    assert WordVocab.from_dict(v.to_dict()).itos == v.itos
    assert len(v.encode("one two three four", 2)) == 2


def test_answer_vocab_keeps_the_most_frequent_answers_and_round_trips():
    a = AnswerVocab.build(["red", "red", "Blue", "blue", "blue", "green"], max_size=2)
    assert a.answers == ["blue", "red"] and a.lookup("Blue") == 0 and a.lookup("green") == -1
    assert AnswerVocab.from_dict(a.to_dict()).answers == a.answers


@pytest.mark.parametrize("box", [(0.0, 0.0, 32.0, 32.0), (3.0, 5.0, 7.0, 2.0), (12.5, 1.0, 0.5, 20.0)])
def test_boxes_round_trip_between_pixel_xywh_and_normalised_cxcywh(box):
    norm = xywh_to_cxcywh_norm(box, 32, 24)
    assert all(0.0 <= v <= 1.5 for v in norm)
    assert cxcywh_norm_to_xywh(norm, 32, 24) == pytest.approx(box)


def test_box_losses_are_zero_for_a_perfect_box_and_grow_with_error():
    t = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    zero = box_losses(t.clone(), t)
    off = box_losses(t + torch.tensor([[0.1, 0.0, 0.0, 0.0]]), t)
    assert float(zero["l1"]) == 0 and float(zero["giou"]) == pytest.approx(0, abs=1e-5)
    assert float(off["l1"]) == pytest.approx(0.1) and float(off["giou"]) > 0


# --- captioning -------------------------------------------------------------------------------

def test_caption_labels_ignore_prefix_bos_and_padding():
    tokens, lengths = pad_batch([[WordVocab.BOS, 7, 8, WordVocab.EOS], [WordVocab.BOS, 9, WordVocab.EOS]])
    labels = caption_labels(tokens, lengths, n_prefix=5)
    assert labels.shape == (2, 9)
    assert (labels[:, :6] == IGNORE).all()  # 5 prefix positions + the given <bos>
    assert labels[0, 6:].tolist() == [7, 8, WordVocab.EOS] and labels[1, 6:].tolist() == [9, WordVocab.EOS, IGNORE]


def test_caption_loss_is_cross_entropy_on_the_words_only():
    torch.manual_seed(0)
    m = CaptionModel(frontend(), 12, layers=1, heads=2, max_words=6, dropout=0.0).eval()
    c = codes(2)
    tokens, lengths = pad_batch([[WordVocab.BOS, 5, 6, WordVocab.EOS], [WordVocab.BOS, 7, WordVocab.EOS]])
    logits = m.logits(c, tokens)
    P = GRID[0] * GRID[1]
    manual = [F.cross_entropy(logits[0, P : P + 3], torch.tensor([5, 6, WordVocab.EOS]), reduction="sum"),
              F.cross_entropy(logits[1, P : P + 2], torch.tensor([7, WordVocab.EOS]), reduction="sum")]
    assert float(m.loss(c, tokens, lengths)) == pytest.approx(float(sum(manual) / 5), rel=1e-5)


def test_beam_search_with_width_one_equals_greedy():
    torch.manual_seed(3)
    m = CaptionModel(frontend(), 12, layers=1, heads=2, max_words=6, dropout=0.0).eval()
    c = codes(4)
    assert m.beam_search(c, beam=1) == m.greedy(c)


def test_captioning_head_overfits_a_handful_of_images():
    vocab = WordVocab.build(["a red circle", "two blue squares", "a green star", "one yellow box"])
    caps = ["a red circle", "two blue squares", "a green star", "one yellow box"]
    c = codes(4, seed=5)
    tokens, lengths = pad_batch([vocab.encode(s, 6, bos=True, eos=True) for s in caps])
    torch.manual_seed(0)
    m = fit(CaptionModel(frontend(), len(vocab), layers=2, heads=2, max_words=6, dropout=0.0),
            lambda m: {"ce": m.loss(c, tokens, lengths)}, steps=150)
    assert [vocab.decode(ids) for ids in m.greedy(c)] == caps
    assert [vocab.decode(ids) for ids in m.beam_search(c, beam=3)] == caps


# --- VQA --------------------------------------------------------------------------------------

def test_vqa_reads_the_last_question_token_and_ignores_padding():
    torch.manual_seed(0)
    m = VQAModel(frontend(), 10, 4, layers=1, heads=2, max_words=6, dropout=0.0).eval()
    c = codes(1)
    short = torch.tensor([[4, 5, WordVocab.EOS]])
    padded = torch.tensor([[4, 5, WordVocab.EOS, WordVocab.PAD, WordVocab.PAD]])
    a = m(c, short, torch.tensor([3]))
    b = m(c, padded, torch.tensor([3]))
    assert torch.allclose(a, b, atol=1e-6)


def test_vqa_head_overfits_a_handful_of_questions():
    words = WordVocab.build(["what colour is it", "how many are there", "what shape is it"])
    qs = ["what colour is it", "how many are there", "what shape is it", "what colour is it"]
    answers = AnswerVocab.build(["red", "two", "circle", "blue"], 10)
    gold = ["red", "two", "circle", "blue"]
    c = codes(4, seed=7)
    tokens, lengths = pad_batch([words.encode(q, 6, eos=True) for q in qs])
    target = torch.tensor([answers.lookup(a) for a in gold])
    m = fit(VQAModel(frontend(), len(words), len(answers), layers=2, heads=2, max_words=6, dropout=0.0),
            lambda m: {"ce": F.cross_entropy(m(c, tokens, lengths), target)}, steps=120)
    pred = [answers.answers[i] for i in m(c, tokens, lengths).argmax(-1).tolist()]
    assert pred == gold


# --- grounding --------------------------------------------------------------------------------

def test_grounding_head_overfits_a_handful_of_boxes():
    words = WordVocab.build(["the red circle", "the blue square"])
    exprs = ["the red circle", "the blue square", "the red circle", "the blue square"]
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.2, 0.4, 0.3], [0.2, 0.8, 0.2, 0.2]])
    c = codes(4, seed=9)
    tokens, _ = pad_batch([words.encode(e, 6) for e in exprs])
    m = fit(GroundingModel(frontend(), len(words), layers=2, heads=2, max_words=6, dropout=0.0),
            lambda m: box_losses(m(c, tokens), boxes), steps=200)
    from lgvq.metrics.grounding import grounding_accuracy

    pred = [cxcywh_norm_to_xywh(b, 32, 32) for b in m(c, tokens).tolist()]
    gt = [cxcywh_norm_to_xywh(b, 32, 32) for b in boxes.tolist()]
    assert grounding_accuracy(pred, gt, 0.5) == 1.0


def test_grounding_ignores_padding_tokens():
    torch.manual_seed(0)
    m = GroundingModel(frontend(), 10, layers=1, heads=2, max_words=6, dropout=0.0).eval()
    c = codes(1)
    a = m(c, torch.tensor([[4, 5]]))
    b = m(c, torch.tensor([[4, 5, WordVocab.PAD, WordVocab.PAD]]))
    assert torch.allclose(a, b, atol=1e-5)


def test_cell_head_finds_the_named_object_among_several():
    # Two objects per image; the expression names one: the head must pick the right cell, not the mean box.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    n = 24
    c = torch.zeros(n, *GRID, dtype=torch.long)
    pos = torch.stack([torch.randperm(9, generator=g)[:2] for _ in range(n)])  # two distinct cells per image
    for i, (a, b) in enumerate(pos.tolist()):
        c[i].view(-1)[a], c[i].view(-1)[b] = 1, 2  # code 1 = "red circle", code 2 = "blue square"
    which = torch.arange(n) % 2
    words = WordVocab.build(["the red circle", "the blue square"])
    tokens, _ = pad_batch([words.encode(["the red circle", "the blue square"][w], 6) for w in which.tolist()])
    cell = pos[torch.arange(n), which]
    boxes = torch.stack([((cell % 3).float() + 0.5) / 3, ((cell // 3).float() + 0.5) / 3,
                         torch.full((n,), 0.2), torch.full((n,), 0.25)], -1)
    m = CellGroundingModel(frontend(), len(words), layers=2, heads=2, max_words=6, dropout=0.0)
    assert torch.equal(m.centre_cell(boxes), cell)
    m = fit(m, lambda m: {k: v for k, v in m.losses(c, tokens, boxes).items()}, steps=250)
    from lgvq.metrics.grounding import grounding_accuracy

    pred = [cxcywh_norm_to_xywh(b, 32, 32) for b in m.predict(c, tokens).tolist()]
    gt = [cxcywh_norm_to_xywh(b, 32, 32) for b in boxes.tolist()]
    assert grounding_accuracy(pred, gt, 0.5) == 1.0


def test_cell_head_boxes_stay_centred_inside_their_own_cell():
    m = CellGroundingModel(frontend(), 10, layers=1, heads=2, max_words=6, dropout=0.0).eval()
    _, boxes = m(codes(2), torch.tensor([[4, 5], [6, 7]]))
    col, row = (boxes[..., 0] * 3).floor(), (boxes[..., 1] * 3).floor()
    assert torch.equal((row * 3 + col).long(), torch.arange(9).expand(2, 9))


def test_front_end_standardizes_the_codebook_without_changing_its_geometry():
    book = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) * 0.01 + 0.003  # a briefly trained codebook
    z = standardized(book)
    assert abs(float(z.pow(2).mean()) - 1.0) < 1e-5 and float(z.mean(0).abs().max()) < 1e-6
    assert torch.equal(torch.cdist(book, book).argsort(1), torch.cdist(z, z).argsort(1))  # same nearest-code order
    raw = CodeFrontEnd(book, GRID, 32, normalize=False)
    assert torch.equal(raw.codebook, book) and not raw.fixed_pos.any()
    pe = sincos_2d((8, 8), 64)
    assert pe.shape == (64, 64) and len({tuple(r) for r in pe.round(decimals=4).tolist()}) == 64  # every cell distinct


def test_front_end_convolutions_let_a_token_see_its_neighbours_and_only_them():
    book = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    grid = (5, 5)
    base = torch.zeros(1, *grid, dtype=torch.long)
    neighbour = base.clone()
    neighbour[0, 0, 1] = 3  # the cell right of (0, 0)
    far = base.clone()
    far[0, 4, 4] = 3
    for layers, sees_neighbour in ((0, False), (1, True)):
        torch.manual_seed(0)
        f = CodeFrontEnd(book, grid, 16, conv_layers=layers)
        cell = lambda c, i: f(c)[0, i]  # noqa: E731
        assert torch.allclose(cell(base, 0), cell(far, 0))  # a code 4 cells away never reaches cell (0, 0)
        assert torch.allclose(cell(base, 0), cell(neighbour, 0)) != sees_neighbour
    torch.manual_seed(0)
    one = CodeFrontEnd(book, grid, 16, conv_layers=1)
    assert torch.allclose(one(base)[0, 3], one(neighbour)[0, 3])  # cell (0, 3): two cells from (0, 1), out of one 3x3
    with pytest.raises(ValueError, match="conv_layers"):
        CodeFrontEnd(book, grid, 16, conv_layers=-1)


def test_front_end_refuses_codes_of_another_grid_or_codebook():
    f = frontend()
    with pytest.raises(ValueError, match="grid"):
        f(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        f(torch.full((1, *GRID), 16, dtype=torch.long))


def local_gpt2(path):
    """A tiny GPT-2 and a GPT-2-style tokenizer saved like a downloaded checkpoint (offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "a", "red", "circle", "two", "blue", "squares", "green", "star"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).save_pretrained(path)
    return path


def test_pretrained_gpt2_from_a_local_directory_decodes_with_its_own_tokenizer(tmp_path):
    """GPT-2's tokenizer uses one id for <bos>, <eos> and padding: labels must come from lengths."""
    model, tok = CaptionModel.from_pretrained(frontend(width=32), str(local_gpt2(tmp_path / "gpt2")), max_words=6)
    assert tok.BOS == tok.EOS == tok.PAD == 0
    caps = ["a red circle", "two blue squares", "a green star", "a blue circle"]
    tokens, lengths = pad_batch([tok.encode(s, 6, bos=True, eos=True) for s in caps], pad=tok.PAD)
    labels = caption_labels(tokens, lengths, 9)
    assert (labels[:, 9 + 1:] == tok.EOS).sum() == 4  # every caption's <eos> is a target, padding is not
    c = codes(4, seed=5)
    m = fit(model, lambda m: {"ce": m.loss(c, tokens, lengths)}, steps=150)
    assert [tok.decode(ids) for ids in m.greedy(c)] == caps
    with pytest.raises(ValueError, match="n_embd"):
        CaptionModel.from_pretrained(frontend(width=16), str(tmp_path / "gpt2"), max_words=6)


# --- grounding: the frame a box is in ----------------------------------------------------------------

def test_boxes_are_normalised_by_the_original_image_never_by_a_prepared_resized_copy(tmp_path):
    from PIL import Image

    from lgvq.data.base import ImageRecord, RefRecord
    from lgvq.data.resized import ResizedSource
    from lgvq.downstream.grounding import box_frames

    original, resized = tmp_path / "original.png", tmp_path / "resized.png"
    Image.new("RGB", (40, 20)).save(original)
    Image.new("RGB", (8, 8)).save(resized)  # what `datasets.<n>.prepare_resized` leaves the records pointing at

    class Base:
        def splits(self):
            return ["train"]

        def records(self, split):
            return [ImageRecord(1, original, ("a caption",))]

    class Resized(ResizedSource):  # the base's records with the prepared copies' paths
        def __init__(self):
            self.base = Base()

        def records(self, split):
            return [ImageRecord(1, resized, ("a caption",))]

    from_instances = [RefRecord(0, 1, "the left one", (0.0, 0.0, 4.0, 4.0), (40, 20))]
    assert box_frames(Resized(), from_instances) == {1: (40, 20)}
    without_size = [RefRecord(0, 1, "the left one", (0.0, 0.0, 4.0, 4.0))]
    assert box_frames(Resized(), without_size) == {1: (40, 20)}  # read from the original file
    with pytest.raises(ArtifactError, match="in no split's records"):
        box_frames(Resized(), [RefRecord(0, 7, "nowhere", (0.0, 0.0, 1.0, 1.0))])
