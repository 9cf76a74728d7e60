"""Constants of the method and of the two benchmarks, defined once."""

# The two training stages, by one name each everywhere (recipes, run kinds, run folders
# `<dataset>-<stage>`): "finetune" = stage 1 (CLIP fine-tuned with the element-wise sum),
# "combiner" = stage 2 (the Combiner on frozen stage-1 features).
STAGES = ("finetune", "combiner")
# The composers stage 2 trains (those of cir_lib.composers with trained weights, in registration
# order), each over the zero-shot and the stage-1 encoders: the Combiner, and the cited TIRG and
# ARTEMIS on the same features. The smoke and paper profiles train all three by default.
COMPOSERS = ("combiner", "tirg", "artemis")

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
MINI_PRESETS = ("smoke", "mini", "mini-x2")  # make-mini presets (cir_lib.mini.PRESETS)
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

FASHIONIQ_POSTER_ORDER = ("shirt", "dress", "toptee")  # the poster's column order (then the average)

# Earlier methods as the poster's comparison tables print them (FashionIQ on val, CIRR on test1).
# `cited_from`: where the poster took the numbers from when not the method's own paper (the poster
# marks those with a dagger); `backbone` only where the poster names one.
CITED_RESULTS = {
    "fashioniq": [
        {"method": "ARTEMIS", "shirt": (21.78, 43.64), "dress": (27.16, 52.40), "toptee": (29.20, 54.83),
         "average": (26.05, 50.29)},
        {"method": "RTIC-GCN w/GloVe", "shirt": (23.79, 47.25), "dress": (29.15, 54.04), "toptee": (31.61, 57.98),
         "average": (28.18, 53.09)},
        {"method": "CoSMo", "shirt": (24.90, 49.18), "dress": (25.64, 50.30), "toptee": (29.21, 57.46),
         "average": (26.58, 52.31)},
        {"method": "AACL", "shirt": (24.82, 48.85), "dress": (29.89, 55.85), "toptee": (30.88, 56.85),
         "average": (28.53, 53.85)},
        {"method": "DCNet", "shirt": (23.95, 47.30), "dress": (28.95, 56.07), "toptee": (30.44, 58.29),
         "average": (27.78, 53.89)},
        {"method": "SAC w/BERT", "shirt": (28.02, 51.86), "dress": (26.52, 51.01), "toptee": (32.70, 61.23),
         "average": (29.08, 54.70)},
        {"method": "Baldrati et al. 2021 (ACM MM Asia)", "backbone": "RN50x4", "shirt": (35.76, 56.20),
         "dress": (27.20, 53.57), "toptee": (36.31, 61.14), "average": (33.09, 56.99)},
    ],
    "cirr": [  # recall@1/5/10/50, recall_subset@1/2/3
        {"method": "TIRG", "cited_from": "CIRR paper", "recall": (14.61, 48.37, 64.08, 90.03),
         "recall_subset": (22.67, 44.97, 65.14)},
        {"method": "MAAF", "cited_from": "CIRR paper", "recall": (10.31, 33.03, 48.30, 80.06),
         "recall_subset": (21.05, 41.81, 61.60)},
        {"method": "MAAF+BERT", "cited_from": "CIRR paper", "recall": (10.12, 33.10, 48.01, 80.57),
         "recall_subset": (22.04, 42.41, 62.14)},
        {"method": "ARTEMIS", "recall": (16.96, 46.10, 61.31, 87.73), "recall_subset": (39.99, 62.20, 75.67)},
        {"method": "CIRPLANT", "cited_from": "CIRR paper", "recall": (15.18, 43.36, 60.48, 87.64),
         "recall_subset": (33.81, 56.99, 75.40)},
        {"method": "CIRPLANT w/OSCAR", "cited_from": "CIRR paper", "recall": (19.55, 52.55, 68.39, 92.38),
         "recall_subset": (39.20, 63.03, 79.49)},
    ],
}
