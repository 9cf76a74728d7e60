"""The mini benchmark's zero-shot profile beside the real datasets' published one.

    python tools/zero_shot_profile.py --data-root /tmp/zs --preset mini          # generate, pretrain, measure
    python tools/zero_shot_profile.py --data-root /tmp/zs --preset calibration --json /tmp/zs.json
    python tools/zero_shot_profile.py --summarize /tmp/zs-*.json    # several runs' checks side by side
    python tools/zero_shot_profile.py --metrics results/mini/metrics/val_metrics.json   # a finished run's

Generates the preset into `--data-root` unless it already holds it (same preset, seed and generator
version), pretrains cir-mini there unless `cir-mini.pt` exists, then evaluates the three zero-shot
composers (image only, text only, their sum) on the val splits of both mini datasets and prints them
beside the published zero-shot numbers (`cir_lib.mini_calibration`), with the ordering and ratio
checks the generator is calibrated against (docs/mini-calibration.md). Nothing is trained but
cir-mini itself: the calibration never looks at stage 1 or the Combiner.

This is a development script, not part of the `cir_lib` library.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from cir_lib import mini
from cir_lib.backbone import load_backbone
from cir_lib.composers import get_composer
from cir_lib.constants import MINI_CHECKPOINT, MINI_NAME
from cir_lib.evaluate import evaluate_dataset
from cir_lib.mini_calibration import (
    PUBLISHED_ZERO_SHOT,
    ZERO_SHOT_COMPOSERS,
    measured_from_metrics,
    profile_checks,
)
from cir_lib.pretrain import pretrain_mini
from cir_lib.recipes import EvalConfig, PretrainConfig


def measure(data_root: Path, preset: str, seed: int, pretrain_seed: int, pretrain_epochs: int = None) -> dict:
    """{dataset: {composer: metrics}} of the zero-shot composers on a (generated) data root."""
    manifest_file = data_root / mini.MANIFEST_NAME
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    if manifest is None:
        mini.make_mini(data_root, preset=preset, seed=seed)
    else:
        mini.check_generator_version(data_root)
        if (manifest["preset"], manifest["seed"]) != (preset, seed):
            sys.exit(f"{data_root} holds preset {manifest['preset']!r} seed {manifest['seed']}; "
                     f"choose another --data-root")
    checkpoint = data_root / MINI_CHECKPOINT
    if not checkpoint.is_file():
        epochs = {} if pretrain_epochs is None else {"epochs": pretrain_epochs}
        pretrain_mini(data_root, out=checkpoint, config=PretrainConfig(seed=pretrain_seed, **epochs))
    backbone = load_backbone(MINI_NAME, str(checkpoint))
    config = EvalConfig(split="val", cache_dir=str(data_root / "feature_cache"))
    measured = {}
    for dataset in PUBLISHED_ZERO_SHOT:
        measured[dataset] = {}
        for composer in ZERO_SHOT_COMPOSERS:
            result = evaluate_dataset(dataset, data_root, backbone, get_composer(composer).build(backbone.embed_dim),
                                      config)
            measured[dataset][composer] = result.get("average", result)
    return measured


def format_profile(measured: dict) -> str:
    lines = []
    for dataset, target in PUBLISHED_ZERO_SHOT.items():
        metrics = list(target["sum"])
        average = "the average over the categories; " if dataset == "fashioniq" else ""
        lines.append(f"\n{dataset} (mini val, {average}published in brackets)")
        lines.append("| composer | " + " | ".join(metrics) + " |")
        lines.append("| --- |" + " --- |" * len(metrics))
        for composer in ZERO_SHOT_COMPOSERS:
            cells = [f"{measured[dataset][composer][m]:.2f} ({target[composer][m]:.2f})" for m in metrics]
            lines.append(f"| {composer} | " + " | ".join(cells) + " |")
    checks = profile_checks(measured)
    lines.append("\n| check | mini | published | ok |\n| --- | --- | --- | --- |")
    lines += [f"| {c['check']} | {c['measured']} | {c['published']} | {'yes' if c['ok'] else 'NO'} |" for c in checks]
    lines.append(f"\n{sum(c['ok'] for c in checks)}/{len(checks)} checks pass")
    return "\n".join(lines)


def format_summary(records: list[dict]) -> str:
    """One row per measured run (`--json` files): its seeds, the checks it passes, the key ratios and
    the ones it fails, so a profile can be compared across generator and pretraining seeds."""
    published = {c["check"]: c["published"] for c in profile_checks(PUBLISHED_ZERO_SHOT)}
    ratios = [name for name in published if "/" in name]
    short = [r.replace("recall_subset@", "Rs@").replace("recall@", "R@").replace("text_only", "text")
             .replace("image_only", "image") for r in ratios]
    lines = ["| generator seed | pretrain seed | checks | " + " | ".join(short) + " | failing |",
             "| --- | --- | --- |" + " --- |" * len(short) + " --- |"]
    for record in records:
        checks = {c["check"]: c for c in profile_checks(record["measured"])}
        failing = [name for name, c in checks.items() if not c["ok"]]
        cells = [f"{checks[r]['measured']}" + ("" if checks[r]["ok"] else " (no)") for r in ratios]
        lines.append(f"| {record['seed']} | {record.get('pretrain_seed', '?')} | "
                     f"{len(checks) - len(failing)}/{len(checks)} | " + " | ".join(cells) + " | "
                     + (", ".join(failing) or "none") + " |")
    lines.append("| published | | | " + " | ".join(str(published[r]) for r in ratios) + " | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, help="where the preset is (or is generated)")
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="JSON",
                        help="instead of measuring: the checks of earlier --json files, a row each")
    parser.add_argument("--metrics", type=Path, metavar="VAL_METRICS_JSON",
                        help="instead of measuring: the checks of a finished series' zero-shot rows "
                             "(results/<profile>/metrics/val_metrics.json, written by notebook 03)")
    parser.add_argument("--preset", default="mini", choices=sorted(mini.PRESETS))
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--pretrain-seed", type=int, default=0, help="cir-mini's pretraining seed")
    parser.add_argument("--pretrain-epochs", type=int, help="cir-mini's pretraining epochs (default: PretrainConfig's)")
    parser.add_argument("--json", type=Path, help="also write the measured profile and checks here")
    args = parser.parse_args(argv)
    if args.summarize:
        print(format_summary([json.loads(path.read_text()) for path in args.summarize]))
        return 0
    if args.metrics:
        print(format_profile(measured_from_metrics(json.loads(args.metrics.read_text()))))
        return 0
    if args.data_root is None:
        parser.error("--data-root is required (or --summarize JSON ..., or --metrics FILE)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    measured = measure(args.data_root, args.preset, args.seed, args.pretrain_seed, args.pretrain_epochs)
    print(format_profile(measured))
    print(f"\n({time.perf_counter() - start:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "seed": args.seed,
                                         "generator_version": mini.MINI_GENERATOR_VERSION,
                                         "pretrain_seed": args.pretrain_seed, "pretrain_epochs": args.pretrain_epochs,
                                         "measured": measured,
                                         "checks": profile_checks(measured)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
