"""The `nvg` command: generate images, extract structure, convert official weights, benchmark, build data.

Run `nvg --help` or `nvg COMMAND --help`. Every command loads the bundled model unless --model names a
model folder or a Hugging Face hub id. The PNGs that generate and edit write carry their recipe
(nvg_core.recipe): `nvg generate --recipe IMAGE.png --out AGAIN.png` makes such an image again.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="DIR_OR_ID",
                        help="a model folder or a Hugging Face hub id (default: the bundled model)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")


LARGE_RUN_S = 60  # generate asks for --yes before a run estimated to take longer (nvg_core.limits.estimate_cost)
EVAL_SECTIONS = ("tokenizer", "quality", "structure", "transfer", "swap")  # nvg_core.evaluate.SECTIONS, for --help
SKETCH_MODES = ("palette", "outline")  # nvg_core.sketch.MODES, written here so that --help imports no OpenCV


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate images of a class",
                       description="Generate images of one class, coarse to fine, and save the final image "
                                   "(and optionally a strip with every stage's structure map and canvas, and a "
                                   "coarse-to-fine GIF). A PNG keeps its recipe; --recipe makes such an image again.")
    _model_argument(p)
    p.add_argument("--class", dest="class_name", default=None,
                   help="a class name (e.g. fruit) or id (required unless --recipe is given)")
    p.add_argument("--recipe", type=Path, default=None, metavar="IMAGE.png",
                   help="make again, bit for bit on the same device type, the image whose recipe this PNG carries "
                        "(with the model that made it; the other generation options come from the recipe)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default 0; the same seed gives the same image; -1: a random one, printed)")
    p.add_argument("--num-images", type=int, default=None, help="images to make (default 1; seeds seed, seed+1, ...)")
    sampling_arguments(p)
    p.add_argument("--sketch", type=Path, default=None,
                   help="a layout drawing whose regions become the structure up to --sketch-stage")
    p.add_argument("--sketch-stage", type=int, default=2, help="the stage the sketch applies to (1-4, default 2)")
    p.add_argument("--sketch-mode", choices=SKETCH_MODES, default="palette",
                   help="palette: regions filled with the app's palette colours; outline: closed strokes of any colour")
    p.add_argument("--out", required=True, type=Path,
                   help="output PNG, with the image's recipe (with several images: NAME_0.png, ...)")
    p.add_argument("--yes", action="store_true",
                   help=f"go on with a run estimated to take over {LARGE_RUN_S} s (its estimated time and memory "
                        "are printed first; without --yes such a run is refused)")
    p.add_argument("--stages-out", type=Path, default=None, help="also save a PNG strip of every stage")
    p.add_argument("--gif", type=Path, default=None,
                   help="also save an animated GIF of the first image made coarse to fine (each stage's structure "
                        "map beside its canvas)")
    p.set_defaults(run=_run_generate)


def sampling_arguments(p: argparse.ArgumentParser) -> None:
    """The sampling options generate and sample take (each left out: the model's default)."""
    p.add_argument("--flow-steps", type=int, default=None, help="structure flow steps per stage (default: the model's)")
    p.add_argument("--content-guidance", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="content guidance, linear from the first to the last stage (default: the model's schedule)")
    p.add_argument("--structure-guidance", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="structure guidance, linear from the first to the last stage (default: the model's schedule)")


def sampling_overrides(args: argparse.Namespace, num_stages: int) -> dict:
    """The SamplingOptions fields the sampling arguments set (for dataclasses.replace of the model's defaults)."""
    from .sampling import linear_schedule
    overrides = {"flow_steps": args.flow_steps,
                 "content_guidance": args.content_guidance and linear_schedule(*args.content_guidance, num_stages),
                 "structure_guidance": args.structure_guidance and linear_schedule(*args.structure_guidance, num_stages)}
    return {name: value for name, value in overrides.items() if value is not None}


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample many images per class into one .npz (for FID), on many processes",
                       description="Make --per-class images of every class (or --classes) and write OUT.npz: arr_0 "
                                   "(uint8 N x H x W x 3, the format the ADM evaluation suite reads), labels and "
                                   "seeds. Image i is class i mod C with seed --seed + i, made in batch i // "
                                   "--batch-size, so the output is the same bit for bit on 1 process or many "
                                   "(torchrun --nproc_per_node N -m nvg_core.cli sample ...: gloo on CPU, NCCL on "
                                   "CUDA). Batches go to OUT.shards/ as they are made; the same command run again "
                                   "skips those on disk.")
    _model_argument(p)
    p.add_argument("--per-class", type=int, required=True, help="images per class (the paper: 50)")
    p.add_argument("--classes", nargs="+", default=None, metavar="CLASS", help="class names or ids (default: all)")
    p.add_argument("--out", type=Path, required=True, help="OUT: writes OUT.npz (and OUT.shards/ while it runs)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32, as the authors)")
    p.add_argument("--seed", type=int, default=0, help="image i's seed is this + i (default 0)")
    sampling_arguments(p)
    p.add_argument("--png", type=Path, default=None, metavar="DIR",
                   help="also save every image as DIR/CLASS/NNNNNN.png with its recipe")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--max-minutes", type=float, default=float("inf"),
                   help="stop after the batch that passes this long; the same command goes on from there")
    p.set_defaults(run=_lazy("bulk", "run"))


def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="extract the structure maps of a reference image",
                       description="Encode an image and save its structure maps at every stage as one PNG strip.")
    _model_argument(p)
    p.add_argument("--image", required=True, type=Path, help="a reference image (any common format)")
    p.add_argument("--out", required=True, type=Path, help="output PNG strip")
    p.set_defaults(run=_run_extract)


def _add_edit(sub) -> None:
    p = sub.add_parser("edit", help="inpaint the part of an image under a mask",
                       description="Tokenize an image and inpaint what lies under a painted mask (white on black, or "
                                   "the opaque pixels of a transparent PNG) from a stage on, optionally as another "
                                   "class: every cluster the mask touches is resampled, and outside the mask the "
                                   "image's own pixels are kept (beyond a 2 px feather at 64 px).")
    _model_argument(p)
    p.add_argument("--image", required=True, type=Path, help="the image to edit (any common format)")
    p.add_argument("--mask", required=True, type=Path, help="the mask: white (or opaque) = regenerate")
    p.add_argument("--from-stage", type=int, default=None,
                   help="the first stage resampled under the mask (default: the app's, nvg_core.locks.INPAINT_STAGE; "
                        "later stages: smaller changes)")
    p.add_argument("--class", dest="class_name", required=True, help="the class for the masked part (name or id)")
    p.add_argument("--cover", type=float, default=0.0,
                   help="free a cluster when this share of it is painted (default 0: any painted cell; 1: only "
                        "clusters wholly under the mask, the exact-cluster edit, which changes little)")
    p.add_argument("--num-variations", type=int, default=1, help="variations to make (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-blend", action="store_true", help="show the decoder's output outside the mask too")
    p.add_argument("--out", required=True, type=Path,
                   help="output PNG, with the image's recipe (with several: NAME_0.png, ...)")
    p.set_defaults(run=_run_edit)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert the official checkpoints to a model folder",
                       description="Convert the authors' ae.ckpt and d16/d20/d24.ckpt (PyTorch Lightning files), or "
                                   "any other official-layout pair (the architecture is read from the checkpoints), "
                                   "into a diffusers pipeline folder (model_index.json, tokenizer/ and transformer/ "
                                   "with config.json + safetensors; NVGPipeline.from_pretrained(DIR).push_to_hub(REPO) "
                                   "publishes it). The official weights come under their authors' licence "
                                   "(S-Lab License 1.0).")
    p.add_argument("--ae", required=True, type=Path, help="path to ae.ckpt (an official-layout autoencoder)")
    p.add_argument("--generator", required=True, type=Path,
                   help="path to d16.ckpt, d20.ckpt, d24.ckpt or another official-layout generator")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist yet)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw generator weights instead of the EMA ones")
    p.add_argument("--allow-unsafe-pickle", action="store_true",
                   help="let torch.load run pickled code if weights_only loading fails (only for files you trust)")
    p.set_defaults(run=_run_convert)


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], None]:
    """A command's run function, imported from nvg_core.`module` when the command runs: building the parser
    (and --help) imports neither torch nor diffusers."""
    def run(args: argparse.Namespace) -> None:
        getattr(importlib.import_module(f"nvg_core.{module}"), function)(args)
    return run


def bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `nvg bench` (and bench/bench_generate.py)."""
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: random weights of --config)")
    parser.add_argument("--config", default="emoji", help="with random weights: 'emoji' (bundled sizes) or "
                        "'official-d16' / 'official-d20' / 'official-d24'")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--flow-steps", type=int, default=None, help="default: the model's (the authors' 25 with random weights)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.set_defaults(run=_lazy("benchmark", "run"))


def _add_bench(sub) -> None:
    bench_arguments(sub.add_parser("bench", help="measure sampling speed and memory",
                                   description="Per-stage and whole-image latency, peak memory, FLOPs and GFLOP/s "
                                               "of sampling."))


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _run_arguments(t: argparse.ArgumentParser, batch: int, data_help: str,
                   out_help: str = "output folder (weights, train_log.jsonl, checkpoint.pt)") -> None:
    """What every training command takes: data, output, batch, schedule, checkpoints, device."""
    t.add_argument("--data", required=True, type=Path, help=data_help)
    t.add_argument("--out", required=True, type=Path, help=out_help)
    t.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the run in DIR from its checkpoint.pt (optimiser, EMA, step, data order, RNG; on "
                        "any number of processes), or start from the weights of a model folder without one")
    t.add_argument("--steps", type=int, default=10_000)
    t.add_argument("--batch-size", type=int, default=batch,
                   help=f"global batch (default {batch}), split evenly among torchrun's processes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="write OUT/checkpoint.pt this often (also at SIGTERM, Ctrl-C, --max-minutes and the end)")
    t.add_argument("--max-minutes", type=float, default=float("inf"), help="stop (and save) after this long")
    t.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only; slower than fp32 on CPUs)")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a tokenizer, a generator or the evaluator; plot a loss log",
                       description="Train a tokenizer, then a generator on its codes (on the emoji-32 data or "
                                   "your own folder dataset), and the frozen evaluator used by `nvg eval`. "
                                   "Under torchrun (torchrun --nproc_per_node N -m nvg_core.cli train ...) the "
                                   "same commands train on N processes.")
    which = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    data_help = "an emoji .npz (nvg data emoji) or a folder dataset (nvg data folder)"
    for name, lr, batch in (("tokenizer", 2e-4, 32), ("generator", 3e-4, 64)):
        t = which.add_parser(name, help=f"train the {name}")
        _run_arguments(t, batch, data_help)
        t.add_argument("--lr", type=float, default=lr)
        t.add_argument("--warmup", type=int, default=200)
        t.add_argument("--ema", type=float, default=0.999)
        t.add_argument("--save-every", type=int, default=1000, help="steps between saves of the folders")
        if name == "tokenizer":
            t.add_argument("--config", default=None,
                           help="tokenizer config (default: emoji-f4 for 64 px data, small-128, small-256)")
            t.add_argument("--refresh-every", type=int, default=100, help="steps between dead-code refreshes")
        else:
            t.add_argument("--config", default="emoji-s", help="generator config (default emoji-s; the number of "
                                                               "classes comes from the data)")
            t.add_argument("--tokenizer", required=True, type=Path, help="folder with the trained tokenizer")
            t.add_argument("--stages-per-sample", type=int, default=2, help="random stages scored per image (0: all)")
            t.add_argument("--branch", choices=("all", "structure"), default="all",
                           help="train both branches, or only the structure branch (content frozen, not run)")
            t.add_argument("--structure-stage-weights", type=_floats, default=None, metavar="W0,W1,...",
                           help="draw the structure stages in proportion to these weights (default: uniformly)")
            t.add_argument("--split-weight", type=float, default=0.0,
                           help="extra weight on the loss of the bit each stage's split decides")
            t.add_argument("--structure-class-proj", action="store_true",
                           help="add the structure_class_proj option (a zero-initialised class path) to the "
                                "config, also when resuming from weights without it")
            t.add_argument("--class-lr-mult", type=float, default=1.0,
                           help="learning-rate multiplier of the class embeddings and structure_class_proj")
            t.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
            t.add_argument("--half-weights", action="store_true", help="store the weights in float16 (half the size)")
        t.set_defaults(run=_lazy("train", f"train_{name}"))
    e = which.add_parser("evaluator", help="train the frozen evaluator (EmojiNet, emoji-32 data only)")
    _run_arguments(e, 128, "the emoji dataset .npz (nvg data emoji)",
                   "model folder to add the evaluator to (evaluator/, logs/evaluator.jsonl, checkpoint.pt)")
    e.set_defaults(steps=20_000)
    e.add_argument("--lr", type=float, default=2e-3)
    e.add_argument("--weight-decay", type=float, default=0.05)
    e.set_defaults(run=_lazy("metrics", "train_evaluator"))
    plot = which.add_parser("plot", help="draw loss logs (train_log.jsonl) as a PNG curve",
                            description="Draw one or more JSON-lines loss logs as PNG curves (needs matplotlib: "
                                        "pip install nvg-studio[train]).")
    plot.add_argument("logs", nargs="+", type=Path, help="train_log.jsonl files (or folders holding one)")
    plot.add_argument("--keys", default=None, help="comma-separated values to draw (default: every loss)")
    plot.add_argument("--out", type=Path, required=True, help="the PNG to write")
    plot.set_defaults(run=_lazy("trainer", "plot"))


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="measure a model with the frozen evaluator",
                       description="Sample quality (FD-EmojiNet, KID, precision/recall, class accuracy), tokenizer "
                                   "PSNR/SSIM per stage, structure fidelity, structure transfer and class swaps.")
    p.add_argument("--model", default=None, metavar="DIR_OR_ID",
                   help="a model folder or a Hugging Face hub id (default: the bundled model)")
    p.add_argument("--evaluator", type=Path, default=None, metavar="DIR",
                   help="model folder holding the frozen evaluator (default: the bundled model's, so that every "
                        "model is measured with the same one)")
    p.add_argument("--data", type=Path, default=Path("data/emoji64.npz"),
                   help="the emoji dataset .npz, or for a model of other classes the folder dataset of them "
                        "(nvg data folder; held-out images where you have them)")
    p.add_argument("--num-samples", type=int, default=256, help="generated images for the sample metrics")
    p.add_argument("--flow-steps", type=int, default=None, help="structure flow steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--sections", nargs="+", default=None, choices=EVAL_SECTIONS, metavar="SECTION",
                   help=f"what to measure, some of: {', '.join(EVAL_SECTIONS)} (default: all that apply; quality "
                        "alone is the sampling and the evaluator's metrics; a model of its own classes, measured "
                        "against its folder dataset, has tokenizer and quality)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=_lazy("evaluate", "run"))


def _add_fid(sub) -> None:
    p = sub.add_parser("fid", help="FID of an .npz of samples against a reference .npz (the ADM suite's format)",
                       description="The FID of SAMPLES.npz (nvg sample) against REFERENCE.npz (for example the ADM "
                                   "reference batch VIRTUAL_imagenet256_labeled.npz), both images as arr_0, with the "
                                   "TensorFlow FID Inception network in TorchScript and torchmetrics' Frechet "
                                   "distance (pip install 'nvg-studio[fid]'). The network file is not downloaded.")
    p.add_argument("samples", type=Path, help="the samples .npz (arr_0: uint8 N x H x W x 3)")
    p.add_argument("reference", type=Path, help="the reference .npz (arr_0: uint8 N x H x W x 3)")
    p.add_argument("--inception", type=Path, default=Path("inception-2015-12-05.pt"), metavar="FILE",
                   help="the Inception network in TorchScript (default: inception-2015-12-05.pt here)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.set_defaults(run=_lazy("fid", "run"))


def _add_data(sub) -> None:
    from .data.emoji import add_arguments  # numpy and Pillow only
    p = sub.add_parser("data", help="build a dataset", description="Build a training dataset.")
    which = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    emoji = which.add_parser("emoji", help="the emoji-32 dataset from pinned npm packages (needs npm)",
                             description="Fetch the pinned emoji packages with npm pack, render and normalise them.")
    add_arguments(emoji)
    emoji.set_defaults(run=_lazy("data.emoji", "run"))
    folder = which.add_parser("folder", help="your own images: one subfolder per class, or a flat folder",
                              description="Read an image folder (one subfolder per class, named by the class; a "
                                          "flat folder is one class) into a dataset folder: images.npy "
                                          "(memory-mapped), labels.npy and index.json with what was skipped and why.")
    folder.add_argument("folder", type=Path, help="the image folder")
    folder.add_argument("--size", type=int, default=64, help="image size in pixels (default 64; 128 and 256 work too)")
    folder.add_argument("--fit", choices=("crop", "pad"), default="crop",
                        help="make images square by a centre crop (default) or by padding on white")
    folder.add_argument("--min-side", type=int, default=None,
                        help="skip images whose shorter side is smaller (default: half of --size)")
    folder.add_argument("--out", type=Path, required=True, help="output dataset folder")
    folder.set_defaults(run=_lazy("data.folder", "run"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvg", description=__doc__.splitlines()[0],
                                     epilog="The web app: nvg-studio (with the app extra), or python app.py in a clone.")
    parser.add_argument("--version", action="version", version=f"nvg {metadata.version('nvg-studio')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(sub)
    _add_sample(sub)
    _add_extract(sub)
    _add_edit(sub)
    _add_convert(sub)
    _add_bench(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_fid(sub)
    _add_data(sub)
    return parser


def _load(args):
    from .official import load_pipeline
    return load_pipeline(args.model, device=args.device)


# generate's options that a recipe sets: refused beside --recipe
RECIPE_SETS = {"class_name": "--class", "seed": "--seed", "num_images": "--num-images", "flow_steps": "--flow-steps",
               "content_guidance": "--content-guidance", "structure_guidance": "--structure-guidance",
               "sketch": "--sketch"}


def _run_generate(args) -> None:
    if args.recipe is not None:
        _run_reproduce(args)
        return
    from .images import to_pil
    from .recipe import attach
    from .seeds import seeds_for
    if args.class_name is None:
        raise ValueError("--class is required (or --recipe IMAGE.png to make an image again)")
    pipe = _load(args)
    class_id = pipe.class_id(args.class_name)
    seeds = seeds_for(0 if args.seed is None else args.seed, 1 if args.num_images is None else args.num_images)
    locks = None
    if args.sketch:
        from .locks import Locks
        from .sketch import project_sketch
        projection = project_sketch(args.sketch, args.sketch_stage, grid=pipe.transformer.config.grid_size,
                                    mode=args.sketch_mode)
        print(f"sketch projected to stage {args.sketch_stage}: {projection.summary()}")
        locks = Locks.from_structure(projection.labels)
    # what is not given stays the model's default: transfer_options where the sketch imposes stages
    options = dataclasses.replace(pipe.options_for(locks), **sampling_overrides(args, pipe.num_stages))
    _check_cost(args, pipe, len(seeds), options)
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, options=options, locks=locks,
                           action=f"sketch (structure of stages 0..{args.sketch_stage})" if args.sketch else "generate")
    images = attach(to_pil(result.images), result.recipes)
    paths = _numbered(args.out, len(images))
    for image, path, seed in zip(images, paths, seeds):
        _save_image(image, path)
        print(f"saved {path} (class {pipe.class_names[class_id]}, seed {seed}){_recipe_note(path)}")
    _save_extras(args, pipe, result)


def _run_reproduce(args) -> None:
    """generate --recipe: the image a PNG's recipe describes, made again."""
    from .images import to_pil
    from .recipe import attach, check_model, read_recipe
    from .sampling import SamplingOptions
    given = [flag for name, flag in RECIPE_SETS.items() if getattr(args, name) is not None]
    if given:
        raise ValueError(f"--recipe makes the image as its recipe says: leave out {', '.join(given)}")
    recipe = read_recipe(args.recipe)
    if recipe is None:
        raise ValueError(f"{args.recipe} carries no nvg recipe")
    pipe = _load(args)
    check_model(recipe, pipe)
    _check_cost(args, pipe, len(recipe.run["classes_BS"]), SamplingOptions(**recipe.run["options"]))
    result = pipe.reproduce(recipe)
    _save_image(attach(to_pil(result.images), result.recipes)[0], args.out)
    print(f"saved {args.out}, made again from the recipe in {args.recipe}: {recipe.parameters()}{_recipe_note(args.out)}")
    _save_extras(args, pipe, result)


def _check_cost(args, pipe, num_images: int, options) -> None:
    """Say what a large run will cost before it starts, and refuse it without --yes (a run past the library's
    bounds is refused by nvg_core whatever the flag)."""
    options.resolved(pipe.num_stages)
    cost = pipe.run_cost(num_images, options)
    if cost.seconds > LARGE_RUN_S or num_images > 1:
        print(f"the run makes {cost}")
    if cost.seconds > LARGE_RUN_S and not args.yes:
        raise ValueError(f"the run is estimated to take over {LARGE_RUN_S} s: add --yes to go on")


def _save_extras(args, pipe, result) -> None:
    """generate's --stages-out and --gif, of the first image."""
    if args.stages_out:
        _save_image(pipe.stage_strip(result, index=0), args.stages_out)
        print(f"saved {args.stages_out}")
    if args.gif:
        _save_bytes(pipe.progression_gif(result, index=0), args.gif)
        print(f"saved {args.gif}")


def _run_extract(args) -> None:
    from .images import load_image
    pipe = _load(args)
    labels_SN = pipe.extract_structure(load_image(args.image))
    _save_image(pipe.structure_strip(labels_SN), args.out)
    print(f"saved {args.out} ({len(labels_SN)} stages)")


def _run_edit(args) -> None:
    from .images import PERCEPTIBLE, changed_shares, load_image, mask_at, read_mask, to_pil, to_uint8
    from .locks import INPAINT_STAGE
    from .recipe import attach
    pipe = _load(args)
    from_stage = INPAINT_STAGE if args.from_stage is None else args.from_stage
    source = pipe.from_image(load_image(args.image), args.class_name)
    mask_HW = read_mask(args.mask)
    seeds = [args.seed + i for i in range(args.num_variations)]
    result = pipe.regenerate(source, from_stage=from_stage, class_labels=args.class_name, mask=mask_HW,
                             cover=args.cover, num_variations=len(seeds), seeds=seeds, blend=not args.no_blend,
                             action=f"edit under a mask from stage {from_stage}"
                                    + (f" (cover {args.cover:g})" if args.cover != 0 else ""))
    before_HW3, region_HW = to_uint8(source.images)[0], mask_at(mask_HW, pipe.tokenizer.spec.resolution)
    images = attach(to_pil(result.images), result.recipes)
    for image, after_HW3, path in zip(images, to_uint8(result.images), _numbered(args.out, len(seeds))):
        _save_image(image, path)
        inside, _ = changed_shares(before_HW3, after_HW3, region_HW)
        print(f"saved {path} ({inside:.0%} of the painted pixels changed by more than {PERCEPTIBLE}/255)"
              f"{_recipe_note(path)}")


def _numbered(path: Path, count: int) -> list[Path]:
    """`path` for one output, NAME_0.png, NAME_1.png, ... for several."""
    return [path] if count == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(count)]


def _run_convert(args) -> None:
    from .official import convert_official
    convert_official(args.ae, args.generator, args.out, ema=not args.raw_weights, allow_unsafe=args.allow_unsafe_pickle)
    print(f"saved {args.out}")


def _is_png(path: Path) -> bool:
    return path.suffix.lower() in ("", ".png")


def _recipe_note(path: Path) -> str:
    """A warning for an image file that cannot keep its recipe."""
    return "" if _is_png(path) else f"; a {path.suffix} file keeps no recipe: save a .png to keep it"


def _save_image(image, path: Path) -> None:
    """Write an image atomically, in the format its suffix names (PNG, with its recipe, without one)."""
    if _is_png(path):
        from .recipe import save_png
        save_png(image, path)
        return
    buffer = io.BytesIO()
    image.save(buffer, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"))
    _save_bytes(buffer.getvalue(), path)


def _save_bytes(data: bytes, path: Path) -> None:
    """Write a file atomically: a temp file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nvg` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"nvg {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
