"""Decoding speed of a translator: sentences/second with the key/value cache and without it (recomputing the prefix).

Translates the first `--sentences` Multi30k test sentences (German) with a trained model file (`--model`, e.g.
the model.ember of `ember train configs/multi30k_transformer.yaml`), greedily and by beam search, in interleaved
rounds in one process. Cached and recomputed decoding must give identical translations: the script checks
and says so. Without a model file it uses an untrained TransformerTranslator of the shipped config's shape
and `--max-length` tokens per sentence (untrained models rarely stop early), which says nothing about
translation quality but measures the same decoding work.

    python benchmarks/decode.py --model runs/multi30k_transformer/model.ember --rounds 3
"""
import argparse
import statistics
import time

import numpy as np
import torch

TARGET = 2.0  # the cache must make decoding at least this many times faster


def load(model_path: str | None, sentences: int):
    """(model, tokenizer, German sentences)."""
    from ember import datasets, models
    from ember.data.subword import SubwordTokenizer
    from ember.tasks import translation
    _, _, (sources, _) = datasets.multi30k.load_data()
    sources = list(sources[:sentences])
    if model_path:
        model = models.load_model(model_path)
        return model, translation.TASK.tokenizer(model), sources
    torch.manual_seed(0)
    (train_de, train_en), _, _ = datasets.multi30k.load_data()
    tokenizer = SubwordTokenizer("bpe", vocab_size=8000, lowercase=False, reversible=True,
                                 special_tokens=translation.SPECIAL)
    tokenizer.adapt(np.concatenate([train_de, train_en]))
    model = models.create_model("transformer_translator", vocabulary_size=tokenizer.vocabulary_size())
    return model, tokenizer, sources


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a translation model.ember (default: an untrained Transformer)")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=None,
                        help="target tokens per sentence (default: the model's rule; 30 without --model)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from ember.models import decoding
    from ember.tasks.translation import encode_sources
    model, tokenizer, sources = load(args.model, args.sentences)
    max_length = args.max_length or (None if args.model else 30)
    ids = encode_sources(tokenizer, sources)
    print(f"model: {args.model or 'untrained transformer_translator'} ({model.count_params():,} weights), "
          f"{len(sources)} test sentences, batch {args.batch_size}, torch threads {torch.get_num_threads()}")

    def runner(beam, cache):
        return lambda: decoding.translate_ids(model, ids, beam_size=beam, use_cache=cache, max_length=max_length,
                                              batch_size=args.batch_size)
    runs = {f"{kind} {'cached' if cache else 'recomputed'}": runner(beam, cache)
            for kind, beam in (("greedy", 1), (f"beam{args.beam}", args.beam)) for cache in (True, False)}
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs to compare
    times = {name: [] for name in runs}
    for r in range(args.rounds):
        names = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for name in names:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: " + "  ".join(f"{n} {len(sources) / times[n][-1]:.1f}" for n in runs)
              + "  (sentences/s)")
    speed = {name: len(sources) / statistics.median(t) for name, t in times.items()}
    print("\nmedian sentences/s: " + "  ".join(f"{n} {s:.1f}" for n, s in speed.items()))
    for kind in ("greedy", f"beam{args.beam}"):
        ratio = speed[f"{kind} cached"] / speed[f"{kind} recomputed"]
        same = outputs[f"{kind} cached"] == outputs[f"{kind} recomputed"]
        differing = sum(a != b for a, b in zip(outputs[f"{kind} cached"], outputs[f"{kind} recomputed"]))
        print(f"{kind}: cached / recomputed {ratio:.2f}x ({'meets' if ratio >= TARGET else 'MISSES'} the "
              f">= {TARGET}x target); outputs {'identical' if same else f'DIFFER in {differing} sentences'}")


if __name__ == "__main__":
    main()
