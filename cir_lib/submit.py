"""CIRR test-server submissions: the two JSON files for test1, and a validator.

Server format (CIRR's evaluation server), one file per metric, at most 5 MB each, every test1 pairid present:

    {"version": "rc2", "metric": "recall",        "<pairid>": [top-50 index image names], ...}
    {"version": "rc2", "metric": "recall_subset", "<pairid>": [top-3 img_set member names], ...}

The reference image is never among either list (the protocol removes it). Rankings are computed
on integer positions by `cir_lib.metrics.cirr_rankings` (descending cosine similarity, ties to the
lower index position) and only turned into names when the files are written.

Commands: `cir-lib submit-cirr --data-root DIR --backbone NAME --pretrained P --out DIR` writes and
validates the pair; `cir-lib validate-cirr --data-root DIR RECALL_JSON SUBSET_JSON` validates a pair.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

import torch

from cir_lib.constants import CIRR_SUBMISSION_MAX_BYTES, CIRR_VERSION
from cir_lib.datasets import get_dataset
from cir_lib.errors import ConfigError, ImageError, SubmissionError, option_name
from cir_lib.recipes import EvalConfig, check_config
from cir_lib.runs import atomic_write_text, check_output_folder
from cir_lib.storage import check_name
from cir_lib.data import load_split
from cir_lib.evaluate import encode_split
from cir_lib.metrics import cirr_rankings, rankings_from_scores

logger = logging.getLogger(__name__)

RECALL_K = 50  # names per query in the recall file
SUBSET_K = 3  # names per query in the recall_subset file
MAX_REPORTED = 10  # problems of one kind listed before "... and N more"


# --------------------------------------------------------------------------- pure ranking -> dicts


def rank_cirr_split(split, index_features: torch.Tensor, query_features: Optional[torch.Tensor], *,
                    k: int = RECALL_K, subset_k: int = SUBSET_K,
                    scores: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two rankings of a CIRR split, as index positions, the reference removed from both.

    Args:
        split: a CIRR `cir_lib.data.Split` (test1 or val).
        index_features: [N, d], rows in `split.image_names` order; query_features: [Q, d], or None
            with `scores`.
        k: length of the full ranking; subset_k: members kept from the subset ranking.
        scores: [Q, N] from a composer of kind "scores" (ARTEMIS), ranked as they are, instead of
            query features.
    Returns:
        (top [Q, k], subset [Q, subset_k]) LongTensors.
    Example:
        >>> top, subset = rank_cirr_split(split, enc.index_features, enc.query_features)
    """
    if not get_dataset(split.dataset).test_server:
        raise ConfigError(f"submissions are for CIRR; got {split.label}")
    queries = (scores if query_features is None else query_features).shape[0]
    if index_features.shape[0] != len(split.image_names) or queries != len(split.queries) or (
            scores is not None and scores.shape[1] != len(split.image_names)):
        raise ConfigError(f"features ({index_features.shape[0]} index rows, {queries} queries) do "
                          f"not match {split.label} ({len(split.image_names)} images, {len(split.queries)} queries)")
    if query_features is None:
        return rankings_from_scores(scores, k, split.reference_indices, split.member_indices, subset_k)
    return cirr_rankings(query_features, index_features, split.reference_indices, split.member_indices,
                         k=k, subset_k=subset_k)


def submission_dicts(split, top: torch.Tensor, subset: torch.Tensor) -> tuple[dict, dict]:
    """The two server dicts from rankings of positions (pure: no I/O).

    Args:
        split: the CIRR split the rankings index (its queries carry the pairids).
        top: [Q, k] positions (the recall list); subset: [Q, subset_k] positions (the subset list).
    Returns:
        (recall dict, recall_subset dict), keys "version", "metric", then str(pairid) in query order.
    Example:
        >>> recall, subset = submission_dicts(split, *rank_cirr_split(split, index, queries))
    """
    names = split.image_names
    recall = {"version": CIRR_VERSION, "metric": "recall"}
    recall_subset = {"version": CIRR_VERSION, "metric": "recall_subset"}
    for query, row, sub in zip(split.queries, top.tolist(), subset.tolist()):
        recall[str(query.pairid)] = [names[j] for j in row]
        recall_subset[str(query.pairid)] = [names[j] for j in sub]
    return recall, recall_subset


def submission_paths(out_dir, tag: str) -> tuple[Path, Path]:
    """(out_dir/recall_submission_<tag>.json, out_dir/recall_subset_submission_<tag>.json).

    Raises:
        ConfigError: a tag that is no file-name part (`cir_lib.storage.check_name`: `../x`, `a/b`, ...).
    """
    check_name(tag, option_name("tag", "--tag"))
    out_dir = Path(out_dir)
    return out_dir / f"recall_submission_{tag}.json", out_dir / f"recall_subset_submission_{tag}.json"


def default_tag(backbone) -> str:
    """A file-name-safe tag from the backbone's name and weights, e.g. "RN50x4-openai"."""
    pretrained = str(backbone.pretrained)
    weights = Path(pretrained).stem if Path(pretrained).is_file() else pretrained
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{backbone.name}-{weights}")


def write_cirr_submission(data_root, backbone, combiner, out_dir, config: Optional[EvalConfig] = None, *,
                          preprocess=None, tag: Optional[str] = None, validate: bool = True) -> tuple[Path, Path]:
    """Encode CIRR test1, rank, and write the two server files (then validate them).

    Args:
        data_root: folder holding cirr_dataset/.
        backbone: a `cir_lib.backbone.Backbone`; combiner: any composer (`ElementwiseSum`,
            `Combiner`, `TIRG`, or `Artemis`, ranked by its score matrix).
        out_dir: folder for the two files (created).
        preprocess: `PreprocessConfig`, a kind name, or None (targetpad at the backbone's size).
        config: an `EvalConfig` (default: split "test1", for the server; "val" writes the same
            format, useful for checks); skip_missing is refused: the server needs every pairid.
            max_queries (dry runs) answers only the first N queries over their own images: the
            files are validated against that capped split, tagged "-cappedN" and are NOT for the
            server (recall lists are shorter than 50 when the capped index is smaller).
        tag: file-name tag (default from the backbone, see `default_tag`).
        validate: run `validate_cirr_submission` and raise SubmissionError on any problem.
    Returns:
        (recall file, recall_subset file).
    Example:
        >>> write_cirr_submission("/data", load_backbone("RN50x4", "openai"), ElementwiseSum(), "submissions")
    """
    config = config or EvalConfig(split="test1")
    split = config.split
    if config.skip_missing:
        raise ConfigError("a CIRR submission cannot skip images: the server needs every test pairid; restore "
                          "the missing images (cir-lib check-data lists them)")
    check_config(config)
    check_output_folder(out_dir)  # before encoding: a file or a read-only folder fails now
    if tag is not None:
        check_name(tag, option_name("tag", "--tag"))  # `../x` would write outside out_dir
    try:  # every image must be there: the server needs every pairid
        data = load_split(data_root, "cirr", split, max_queries=config.max_queries)
        encoded = encode_split(data, backbone, combiner, config, preprocess=preprocess)
    except ImageError as err:
        raise _without_skip_advice(err, data_root, split) from None
    top, subset = rank_cirr_split(data, encoded.index_features, encoded.query_features, k=recall_length(data),
                                  scores=encoded.scores)
    recall, recall_subset = submission_dicts(data, top, subset)
    tag = tag or default_tag(backbone)
    if data.capped is not None:
        tag += f"-capped{data.capped}"
    recall_path, subset_path = submission_paths(out_dir, tag)
    atomic_write_text(recall_path, json.dumps(recall, separators=(",", ":")))
    atomic_write_text(subset_path, json.dumps(recall_subset, separators=(",", ":")))
    logger.info("wrote %s and %s (%d queries)", recall_path, subset_path, len(data.queries))
    if data.capped is not None:
        logger.warning("%s and %s answer only the first %d queries of %s (a dry run): NOT for the "
                       "evaluation server, which needs every pairid", recall_path.name, subset_path.name,
                       data.capped, split)
    if validate:
        problems = validate_cirr_submission(recall_path, subset_path, data_root, split=split, loaded=data)
        if problems:
            raise SubmissionError(format_problems(problems, recall_path, subset_path))
    return recall_path, subset_path


# --------------------------------------------------------------------------- validation


def _without_skip_advice(err: ImageError, data_root, split: str) -> ImageError:
    """The data reader's ImageError without its advice to skip images (no option of a submission)."""
    head = str(err)
    if "skip_missing" in head:  # keep the message up to the clause or sentence that advises skipping
        head = head[:head.find("skip_missing")]
        cut = max(head.rfind(", or "), head.rfind(". ") + 1)
        head = head[:cut].rstrip(" ;,") if cut > 0 else head
    head = head if head.endswith(".") else head + "."
    return ImageError(f"{head} A submission needs every {split} image (the server scores every pairid): "
                      f"restore them; `cir-lib check-data --data-root {data_root} --dataset cirr` lists what "
                      "is missing.")


def format_problems(problems: list, recall_path, subset_path) -> str:
    shown = "\n  - ".join(problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return (f"the submission {recall_path} / {subset_path} would be rejected ({len(problems)} problem(s)):"
            f"\n  - {shown}{more}")


def _listed(items: list) -> str:
    shown = ", ".join(str(x) for x in items[:5])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 5 else "")


def _load_submission(path: Path, problems: list) -> Optional[dict]:
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    size = path.stat().st_size
    if size >= CIRR_SUBMISSION_MAX_BYTES:
        problems.append(f"{path}: {size:,} bytes, the server takes files under "
                        f"{CIRR_SUBMISSION_MAX_BYTES:,} bytes (5 MB); write compact JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(f"{path}: not valid JSON ({err})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object {{\"version\", \"metric\", \"<pairid>\": [...]}}, "
                        f"got {type(data).__name__}")
        return None
    return data


def _check_file(path: Path, data: dict, metric: str, length: int, queries: dict, index_names: set,
                problems: list) -> None:
    """Problems of one submission dict against the split's queries ({str(pairid): Query})."""
    if data.get("version") != CIRR_VERSION:
        problems.append(f"{path}: \"version\" is {data.get('version')!r}, must be {CIRR_VERSION!r}")
    if data.get("metric") != metric:
        problems.append(f"{path}: \"metric\" is {data.get('metric')!r}, must be {metric!r}")
    keys = {k for k in data if k not in ("version", "metric")}
    missing = [p for p in queries if p not in keys]
    extra = sorted(keys - set(queries))
    if missing:
        problems.append(f"{path}: {len(missing)} pairid(s) missing: {_listed(missing)}")
    if extra:
        problems.append(f"{path}: {len(extra)} key(s) that are not pairids of the split: {_listed(extra)}")
    bad: dict[str, list] = {}
    for pairid, query in queries.items():
        names = data.get(pairid)
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            bad.setdefault("not a list of image names", []).append(pairid)
            continue
        if len(names) != length:
            bad.setdefault(f"not exactly {length} names", []).append(pairid)
        if len(set(names)) != len(names):
            bad.setdefault("repeated names", []).append(pairid)
        if query.reference in names:
            bad.setdefault("the reference image listed", []).append(pairid)
        if metric == "recall":
            if any(n not in index_names for n in names):
                bad.setdefault("names not in the split's index", []).append(pairid)
        elif any(n not in query.members for n in names):
            bad.setdefault("names not in the query's img_set", []).append(pairid)
    for what, pairids in bad.items():
        problems.append(f"{path}: {len(pairids)} pairid(s) with {what}: {_listed(pairids)}")


def recall_length(split) -> int:
    """Names per query in the recall file: 50, or the capped index's size less the reference."""
    if split.capped is None:
        return RECALL_K
    return max(1, min(RECALL_K, len(split.image_names) - 1))


def validate_cirr_submission(recall_path, subset_path, data_root, *, split: str = "test1",
                             loaded=None, max_queries: Optional[int] = None) -> list:
    """Check a pair of submission files against the split's annotations, as the server would.

    Checks: files under 5 MB and valid JSON objects; "version" == "rc2"; "metric" == "recall" /
    "recall_subset"; every pairid of the split present and no other key; recall lists of 50 distinct
    names of the split's index, subset lists of 3 distinct img_set members; the reference in neither.

    Args:
        recall_path, subset_path: the two files.
        data_root: folder holding cirr_dataset/ (only the annotation files are read).
        split: "test1" (or "val" for a val-format file).
        loaded: that split already loaded (a `cir_lib.data.Split`), to check many files without
            reading the annotations again; data_root, split and max_queries are then ignored.
        max_queries: check a dry run's capped files (`write_cirr_submission` with
            `EvalConfig.max_queries`): every pairid of the capped split, recall lists as long as
            its index allows (at most 50). None: the whole split, as the server checks.
    Returns:
        A list of problems (strings naming the file, the count and example pairids); empty = valid.
    Example:
        >>> validate_cirr_submission("recall_submission_x.json", "recall_subset_submission_x.json", "/data")
        []
    """
    data = loaded if loaded is not None else load_split(data_root, "cirr", split, check_files=False,
                                                        max_queries=max_queries)
    if not get_dataset(data.dataset).test_server:
        raise ConfigError(f"submissions answer a CIRR split; got {data.label}")
    queries = {str(q.pairid): q for q in data.queries}
    index_names = set(data.image_names)
    problems: list = []
    for path, metric, length in ((Path(recall_path), "recall", recall_length(data)),
                                 (Path(subset_path), "recall_subset", SUBSET_K)):
        content = _load_submission(path, problems)
        if content is not None:
            _check_file(path, content, metric, length, queries, index_names, problems)
    return problems
