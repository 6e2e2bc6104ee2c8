"""The translator application: the demo learns, files round-trip, bad input gets clear messages."""
import numpy as np
import pytest

from lstmkit.seq2seq.generated import demo_corpus
from lstmkit.seq2seq.metrics import bleu_tokens, corpus_bleu
from lstmkit.seq2seq.translator import Translator


def test_demo_training_learns_on_reduced_settings(capsys):
    from lstmkit.demo import run
    accuracy = run(dict(train_size=3000, test_size=100, valid_size=50, seconds=None, max_epochs=20,
                        hidden_size=96, learning_rate=8e-3))
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == f"exact-match accuracy: {accuracy:.1f}%"
    assert accuracy >= 80.0


@pytest.fixture(scope="module")
def tiny():
    train, test = demo_corpus(200, 20, seed=3)
    tr = Translator.build(train, tokenizer=("char", "word"), embedding_size=8, hidden_size=12,
                          attention="general", seed=1)
    return tr, train, test


def test_save_load_round_trip(tiny, tmp_path):
    tr, _, test = tiny
    path = tr.save(tmp_path / "m.npz")
    again = Translator.load(path)
    sources = [s for s, _ in test[:5]]
    a, b = tr.translate(sources, beam_size=2), again.translate(sources, beam_size=2)
    assert [x.text for x in a] == [x.text for x in b]
    assert again.model.config == tr.model.config
    assert again.src_vocab.tokens == tr.src_vocab.tokens


def test_model_file_for_another_configuration_is_refused(tiny, tmp_path):
    tr, train, _ = tiny
    other = Translator.build(train, tokenizer=("char", "word"), embedding_size=8, hidden_size=16,
                             attention="general")
    path = other.save(tmp_path / "other.npz")
    data = dict(np.load(path))
    data["param/output/kernel"] = data["param/output/kernel"][:, :5]     # another vocabulary
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="output/kernel"):
        Translator.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not an lstmkit translator"):
        Translator.load(tmp_path / "plain.npz")


def test_empty_string_translates_to_empty(tiny):
    tr, _, test = tiny
    out = tr.translate(["", test[0][0], "   "])
    assert out[0].text == "" and out[2].text == "" and out[0].tokens == []
    assert tr.translate("").text == ""


def test_attention_heatmap_png(tiny, tmp_path):
    pytest.importorskip("matplotlib")
    tr, _, test = tiny
    t = tr.translate(test[0][0], max_len=4)
    path = tr.plot_attention(t, tmp_path / "att.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps = ["A man rides a bike .", "Two dogs play in the grass .", "a woman is cooking"]
    refs = ["A man is riding a bike .", "Two dogs are playing in the grass .", "A woman cooks ."]
    ours = corpus_bleu([bleu_tokens(h) for h in hyps], [bleu_tokens(r) for r in refs])
    theirs = sacrebleu.corpus_bleu([" ".join(bleu_tokens(h)) for h in hyps],
                                   [[" ".join(bleu_tokens(r)) for r in refs]], tokenize="none",
                                   smooth_method="none", force=True).score
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert corpus_bleu([["a", "b"]], [["c", "d"]]) == 0.0


def test_cli_train_translate_eval(tmp_path, capsys):
    from lstmkit.cli import main
    train, _ = demo_corpus(120, 10, seed=5)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{de}\t{en}\n" for de, en in train), encoding="utf-8")
    model = tmp_path / "m.npz"
    main(["translate", "train", "--tsv", str(tsv), "--out", str(model), "--epochs", "1",
          "--hidden-size", "16", "--embedding-size", "8", "--merges", "50", "--batch-size", "32"])
    assert model.exists()
    capsys.readouterr()
    main(["translate", "translate", "--model", str(model), "einundzwanzig", "", "--beam-size", "2"])
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 3 and lines[1] == ""          # the empty sentence gives an empty line
    main(["translate", "eval", "--model", str(model), "--tsv", str(tsv), "--beam-size", "1"])
    assert "bleu_lowercase_tokenized:" in capsys.readouterr().out


def test_cli_refuses_a_file_that_is_not_a_translator(tmp_path):
    from lstmkit.cli import main
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not an lstmkit translator"):
        main(["translate", "translate", "--model", str(tmp_path / "x.npz"), "Hallo"])


def test_cli_help_lists_the_three_actions(capsys):
    from lstmkit.cli import main
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    out = capsys.readouterr().out
    assert "train" in out and "eval" in out and "lstmkit translate translate --model" in out


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    train, _ = demo_corpus(96, 4, seed=6)

    def fresh():
        return Translator.build(train, tokenizer=("char", "word"), embedding_size=6, hidden_size=8,
                                attention="additive", dropout=0.2, seed=2)
    straight = fresh()
    straight.fit(train, epochs=2, batch_size=32, learning_rate=1e-2, verbose=0)
    ckpt = tmp_path / "run.npz"
    first = fresh()
    first.fit(train, epochs=1, batch_size=32, learning_rate=1e-2, verbose=0, checkpoint=ckpt)
    resumed = fresh()
    resumed.fit(train, epochs=2, batch_size=32, learning_rate=1e-2, verbose=0, checkpoint=ckpt,
                resume=ckpt)
    for k, v in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], v, err_msg=k)


def test_unknown_characters_translate_without_error(tiny):
    tr, _, _ = tiny
    out = tr.translate("Ein 漢字 Mann")
    assert isinstance(out.text, str)
    assert "▁漢" in out.source_tokens
    assert 1 in tr.encode_source("Ein 漢字 Mann")        # <unk>


def test_stop_after_keeps_the_time_budget_instead_of_overrunning_it(monkeypatch):
    import types
    from lstmkit.seq2seq import translator
    clock = iter([0.0, 40.0, 80.0])              # train begins; epoch 1 ends; epoch 2 ends
    monkeypatch.setattr(translator.time, "monotonic", lambda: next(clock))
    cb = translator.StopAfter(seconds=100)
    cb.run = types.SimpleNamespace(stop_training=False)
    cb.on_train_begin()
    cb.on_epoch_end(0)
    assert not cb.run.stop_training              # 40 s + another 40 s epoch fits in 100 s
    cb.on_epoch_end(1)
    assert cb.run.stop_training                  # 80 s + 40 s would end at 120 s
