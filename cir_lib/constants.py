"""Constants of the method and of the two benchmarks, defined once."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout (notebooks/, results/, data/)

# The two training stages, by one name each everywhere (recipes, run kinds, run folders
# `<dataset>-<stage>`): "finetune" = stage 1 (CLIP fine-tuned with the element-wise sum),
# "combiner" = stage 2 (the Combiner on frozen stage-1 features).
STAGES = ("finetune", "combiner")
STAGE_LABELS = {"finetune": "stage 1", "combiner": "Combiner"}  # for titles and figure legends

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TARGETPAD_RATIO = 1.25
PREPROCESS_KINDS = ("clip", "squarepad", "targetpad")

DATASETS = ("fashioniq", "cirr")
FASHIONIQ_DIR = "fashionIQ_dataset"
CIRR_DIR = "cirr_dataset"
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_SPLITS = ("train", "val", "test")
CIRR_SPLITS = ("train", "val", "test1")
CIRR_VERSION = "rc2"
CIRR_SET_SIZE = 6  # members of a CIRR img_set (reference and target among them)
MINI_POOL_DIR = "mini_pool"  # extra folder written by make-mini: images with absolute captions
MINI_NAME = "cir-mini"  # the tiny CLIP the kit pretrains itself (model_configs/cir-mini.json)
MINI_PRESETS = ("smoke", "mini")  # make-mini presets (cir_lib.mini.PRESETS)
MINI_CHECKPOINT = "cir-mini.pt"  # pretrain-mini's output in a mini data root (recipes: "{data_root}/cir-mini.pt")

FASHIONIQ_KS = (10, 50)
CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRR_SUBMISSION_MAX_BYTES = 5 * 1024 * 1024

EVAL_IMAGE_BATCH = 64  # images per forward pass when encoding for evaluation
EVAL_TEXT_BATCH = 256  # captions per forward pass

LOGIT_SCALE = 100.0  # logits = 100 * query @ target.T in both stages

# Published numbers of the workshop poster. FashionIQ on val, CIRR on test1.
PAPER_RESULTS = {
    "fashioniq": {
        "RN50": {
            "shirt_recall@10": 35.77, "shirt_recall@50": 57.02,
            "dress_recall@10": 31.73, "dress_recall@50": 56.02,
            "toptee_recall@10": 36.46, "toptee_recall@50": 62.77,
            "average_recall@10": 34.65, "average_recall@50": 58.60,
        },
        "RN50x4": {
            "shirt_recall@10": 39.99, "shirt_recall@50": 60.45,
            "dress_recall@10": 33.81, "dress_recall@50": 59.40,
            "toptee_recall@10": 41.41, "toptee_recall@50": 65.37,
            "average_recall@10": 38.32, "average_recall@50": 61.74,
        },
    },
    "cirr": {
        "RN50": {
            "recall@1": 35.81, "recall@5": 68.80, "recall@10": 80.17, "recall@50": 95.25,
            "recall_subset@1": 66.96, "recall_subset@2": 85.25, "recall_subset@3": 93.13,
        },
        "RN50x4": {
            "recall@1": 38.53, "recall@5": 69.98, "recall@10": 81.86, "recall@50": 95.93,
            "recall_subset@1": 68.19, "recall_subset@2": 85.64, "recall_subset@3": 94.17,
        },
    },
}
