"""The paper's recipe end to end on the real SST-2, on a tiny T5.

Question: does `keras_prompt.training.lester2021` run the whole pipeline
(TFDS SST-2 -> class-label prompt -> Adafactor -> dev evaluation by
generation -> best prompt file) and what does it cost? The dev accuracy is
printed next to the majority-class baseline measured on the same dev
examples in the same run.

By default the frozen model is a tiny T5 (the `keras_prompt.toy`
architecture, tied embeddings) with a SentencePiece unigram vocabulary
trained on the SST-2 training sentences, first trained for
`--pretrain-steps` on unlabelled text-to-text pairs made from those
sentences (prefix LM and denoising: a miniature of the pretrained T5 the
paper prompts; it never sees a label). A model this small is not expected
to learn sentiment from a prompt (the paper finds prompt tuning needs
scale); the last line shows what the best prompt makes it say. Pass
`--preset` to run the same recipe on a real T5 checkpoint (keras-hub
preset or Hugging Face T5 folder).

    python benchmarks/recipe_sst2.py --steps 200 --eval-interval 50 \
        --prompt-length 20 --max-train-examples 5000
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-train-examples", type=int, default=5000)
    parser.add_argument(
        "--max-eval-examples",
        type=int,
        default=None,
        help="dev examples to score (default: all 872)",
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--output-dir", default=None, help="default: a temporary folder"
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="a real T5 preset or HF T5 folder instead of the tiny T5",
    )
    parser.add_argument("--pretrain-steps", type=int, default=500)
    parser.add_argument("--pretrain-learning-rate", type=float, default=5e-3)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--encoder-length", type=int, default=48)
    parser.add_argument("--decoder-length", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def pretraining_pairs(sentences, rng, target_words=6, copy_words=2):
    """Unlabelled T5-style pairs over the sentences, half of each kind:

    - prefix LM: `(first words, the next words)`;
    - denoising: `(the sentence with ~15% of words dropped, its first
      two words)`, which teaches the decoder to copy input words.
    """
    inputs, targets = [], []
    for index, sentence in enumerate(sentences):
        words = sentence.split()
        if len(words) < 2:
            continue
        if index % 2:
            cut = int(rng.integers(1, len(words)))
            inputs.append(" ".join(words[:cut]))
            targets.append(" ".join(words[cut : cut + target_words]))
        else:
            kept = [w for w in words if rng.random() > 0.15] or words[:1]
            inputs.append(" ".join(kept))
            targets.append(" ".join(words[:copy_words]))
    return inputs, targets


def subword_proto(sentences, vocab_size):
    """A SentencePiece unigram model trained in memory (T5 ids: pad 0,
    eos 1, unk 2). Subwords leave almost no `<unk>` in the text."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def tiny_t5(args, train_examples):
    """A tiny T5 + preprocessor with an SST-2 vocabulary, LM-pretrained."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from keras_prompt import toy

    corpus = [e.inputs for e in train_examples]
    corpus += [e.targets for e in train_examples]
    proto = subword_proto(corpus, args.vocab_size)
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=args.encoder_length,
        decoder_sequence_length=args.decoder_length,
    )
    backbone = toy.toy_t5(
        tokenizer.vocabulary_size(),
        hidden_dim=args.hidden_dim,
        tie_embedding_weights=True,
    )
    seconds, loss = 0.0, None
    if args.pretrain_steps:
        rng = np.random.default_rng(args.seed)
        sentences = [e.inputs.split(":", 1)[1] for e in train_examples]
        inputs, targets = pretraining_pairs(sentences, rng)
        lm = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor)
        lm.compile(
            optimizer=keras.optimizers.Adam(args.pretrain_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
        pairs = tf.data.Dataset.from_tensor_slices((inputs, targets))
        pairs = pairs.shuffle(len(inputs), seed=args.seed).repeat()
        pairs = pairs.batch(64).map(
            lambda x, y: {"encoder_text": x, "decoder_text": y}
        )
        start = time.perf_counter()
        history = lm.fit(
            pairs, steps_per_epoch=args.pretrain_steps, epochs=1, verbose=0
        )
        seconds = time.perf_counter() - start
        loss = history.history["loss"][-1]
    return backbone, preprocessor, seconds, loss


def main(argv=None):
    args = parse_args(argv)
    import keras_prompt

    keras_prompt.set_random_seed(args.seed)  # before any tokenizer exists
    import collections

    from keras_prompt.data import evaluate_generation
    from keras_prompt.data import load_examples
    from keras_prompt.training import lester2021

    output_dir = args.output_dir or tempfile.mkdtemp(prefix="recipe_sst2_")
    train_examples = load_examples(
        "glue/sst2",
        "train",
        data_dir=args.data_dir,
        max_examples=args.max_train_examples,
    )
    dev_examples = load_examples(
        "glue/sst2",
        "validation",
        data_dir=args.data_dir,
        max_examples=args.max_eval_examples,
    )
    recipe = lester2021(
        "glue/sst2",
        prompt_length=args.prompt_length,
        batch_size=args.batch_size,
        steps=args.steps,
        eval_interval=args.eval_interval,
        eval_batch_size=128,
        seed=args.seed,
    )
    if args.preset:
        model = recipe.build_model(args.preset)
        model_name, pretrain_seconds, pretrain_loss = args.preset, 0.0, None
    else:
        backbone, preprocessor, pretrain_seconds, pretrain_loss = tiny_t5(
            args, train_examples
        )
        model = recipe.build_model(
            backbone=backbone, preprocessor=preprocessor, jit_compile=False
        )
        model_name = (
            f"tiny T5 (2+2 layers, hidden {args.hidden_dim}, vocab "
            f"{backbone.vocabulary_size}, "
            f"{backbone.count_params():,} frozen params)"
        )

    def dev_accuracy():
        return evaluate_generation(
            model,
            "glue/sst2",
            "validation",
            data_dir=args.data_dir,
            batch_size=128,
            max_examples=args.max_eval_examples,
        )["accuracy"]

    initial = dev_accuracy()
    result = recipe.fit(
        model,
        output_dir=output_dir,
        data_dir=args.data_dir,
        max_train_examples=args.max_train_examples,
        max_eval_examples=args.max_eval_examples,
        verbose=0,
    )
    counts = collections.Counter(e.targets for e in train_examples)
    majority_label = counts.most_common(1)[0][0]
    majority = sum(e.targets == majority_label for e in dev_examples) / len(
        dev_examples
    )
    size = os.path.getsize(result.prompt_path)
    best = result.best_value
    # What the best prompt makes the model say (and the accuracy by hand).
    predictions = []
    for start in range(0, len(dev_examples), 128):
        batch = dev_examples[start : start + 128]
        predictions += [
            p.strip() for p in model.generate([e.inputs for e in batch])
        ]
    by_hand = sum(
        p == e.targets for p, e in zip(predictions, dev_examples)
    ) / len(dev_examples)
    labels = set(recipe.label_strings)
    label_rate = sum(p in labels for p in predictions) / len(predictions)
    common = collections.Counter(predictions).most_common(3)

    print("keras_prompt recipe lester2021 on glue/sst2 (CPU)")
    print(f"  model                  {model_name}")
    if pretrain_loss is not None:
        print(
            f"  pretraining (no labels) {args.pretrain_steps} steps, "
            f"{pretrain_seconds:.1f} s, final loss {pretrain_loss:.3f}"
        )
    print(
        f"  recipe                 prompt {recipe.prompt_length} (class-"
        f"label init), batch {recipe.batch_size}, Adafactor lr "
        f"{recipe.learning_rate}, eval every {recipe.eval_interval} steps"
    )
    print(f"  train examples         {len(train_examples)}")
    print(f"  dev examples           {len(dev_examples)}")
    print(f"  steps trained          {result.steps}")
    print(
        f"  train time             {result.train_seconds:.1f} s "
        f"({1000 * result.train_seconds / max(result.steps, 1):.0f} ms/step,"
        f" excluding evaluation)"
    )
    print(
        f"  evaluation time        {result.eval_seconds:.1f} s for "
        f"{len(result.evaluations)} dev evaluations"
    )
    print(
        "  dev accuracy per eval  "
        + ", ".join(
            f"{e['step']}: {e['value']:.4f}" for e in result.evaluations
        )
    )
    print(f"  dev accuracy, step 0   {initial:.4f} (class-label prompt)")
    print(f"  dev accuracy, best     {best:.4f} (step {result.best_step})")
    print(
        f"  majority baseline      {majority:.4f} (always "
        f"'{majority_label}', the training majority)"
    )
    print(f"  best / majority        {best / majority:.3f}")
    print(
        f"  best prompt says       label words {100 * label_rate:.1f}%; "
        + ", ".join(
            f"{text!r} {100 * n / len(predictions):.1f}%" for text, n in common
        )
        + f" (accuracy by hand {by_hand:.4f})"
    )
    print(f"  prompt file            {result.prompt_path} ({size:,} bytes)")
    return result


if __name__ == "__main__":
    main()
