"""Readers for the real FashionIQ and CIRR layouts (and the mini benchmarks, which share them).

CONTRACT (other modules code against these names; bodies are filled in by the foundation work):

    Query            frozen dataclass: reference, captions (tuple), target (None on test), pairid
                     (CIRR), members (CIRR img_set, 6 names incl. reference), category (FashionIQ)
    SkipReport       dataclass: queries, images (counts removed by skip_missing), details
                     (list of str); `to_dict()`
    Split            dataclass: dataset, split, category, data_root, image_names (index order =
                     split-file order), image_paths, queries, skipped (SkipReport)
                     .name_to_index (dict), .indices(names) -> LongTensor,
                     .reference_indices / .target_indices -> LongTensor [Q],
                     .member_indices -> LongTensor [Q, 6]
    load_split(data_root, dataset, split, category=None, *, skip_missing=False, check_files=True)
    load_fashioniq(data_root, category, split, **kw) / load_cirr(data_root, split, **kw)
    merge_splits(splits) -> Split   (pools FashionIQ categories; images de-duplicated by name)
    ImageDataset(paths, transform, split_label)  -> item i = transformed image tensor; raises
                     ImageError naming the file and the split when missing/unreadable
    fashioniq_caption_variants(c1, c2) -> 4 strings (c1 and c2 / c2 and c1 / c1 / c2), cleaned
    fashioniq_eval_caption(c1, c2) -> "C1 and c2"
    cirr_caption(caption) -> the caption as it is
"""
