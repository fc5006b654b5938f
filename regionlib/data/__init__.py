"""regionlib.data — datasets, readers, augmentation and mask groups (layer 4 of DESIGN.md).

Public API (import from the submodules; this package imports nothing heavy eagerly).

RegionWorld, the embedded default dataset (`regionlib.data.regionworld`; text grammar in
`regionlib.data.grammar`; documented in ``regionlib/data/REGIONWORLD.md``)::

    RegionWorldConfig(*, image_size=256, encoder_size=64, min_objects=2, max_objects=6, distractor_p=0.3,
                      outline_p=0.3, size_p=(.3, .25, .25, .2), background_p=(.5, .2, .3), min_visible=0.4,
                      draw_patterns=True, resolve_px=2.5, crop_min_size=48, crop_expansion=3.0, ...)
        .periods -> {size class: pattern period in px};  RegionWorldConfig.for_encoder(224) -> 320-px images
    generate_regionworld(n_images, *, seed=0, image_size=None, split="train", config=None, **config_fields)
        -> list[RegionWorldSample]
    generate_splits(*, n_train, n_val, n_test, seed=0, config=None) -> {"train" | "val" | "test": [...]}
    generate_sample(seed | (seed, split_code, index), *, config=None) -> RegionWorldSample
    RegionWorldSample: .image_id str, .image (H, W, 3) uint8, .regions Regions, .seed, .split, .config
        regions.masks (N, H, W) visible parts (RLE inside), regions.captions (detailed captions),
        regions.labels (class name = shape), regions.ids ("{image_id}_{k}"),
        regions.data["keyword" | "phrase"] (str per region),
        regions.data["attributes"] (dict per region: shape, color, pattern, pattern_period, size,
            size_px, outline, position, relation, relation_target, relation_target_index,
            occluded_fraction, center_xy, background, draw_order),
        regions.data["questions"] (DLC-Bench record per region: details_recognition /
            details_positives / details_negatives, the released evaluator's format)
    regionworld_to_hf(samples) -> datasets.Dataset; save_regionworld(samples | {split: samples}, path)
    load_regionworld(path, *, split=None) -> list[RegionWorldSample] | {split: list}
    to_dlc_bench(samples, root)          # DLC-Bench release layout, read back by readers.dlc_bench
    pattern_visibility(sample, *, encoder_size=None) -> {"full": (N,), "focal": (N,)} pattern retention
    attribute_accuracy(captions, attributes) -> {attribute: share named correctly}
    VOCABULARY (attribute -> closed value list); grammar.caption_words() (every word captions use)

Readers (`regionlib.data.readers.<module>`), each returning an iterator of `ImageRecord`
(``.image_id, .image_path, .image_size, .regions: Regions, .extra: dict, .load_image()``), with
``on_error="raise" | "skip"`` and ``report=ReadReport()`` (skipped records are collected, never
dropped silently); bad input raises `regionlib.errors.DataFormatError` naming file and record::

    coco.read_coco(annotation_json, image_root, *, lvis=False, check_images=True, ...); coco.read_lvis(...)
    visual_genome.read_visual_genome(root, *, split=None, densecap_splits=None, ...)
    visual_genome.read_vg_scene_graphs(root, ...)   # objects + attributes + relationships
    refcoco.read_refcoco(root, dataset="refcoco", split_by="unc", *, image_root, split=None, ...)
    refcoco.load_refs_pickle(path)                  # restricted unpickler: plain data only
    grefcoco.read_grefcoco(root, *, image_root, split=None, ...)  # extra["expressions"]: 0/1/many targets
    panoptic.read_coco_panoptic(panoptic_json, panoptic_root, image_root, ...); panoptic.rgb2id / id2rgb
    pancap.read_pancap(pancap_json, panoptic_root, image_root, *, caption_key="caption", ...)
    pancap.parse_grounded_caption("<4:large zebu> ...") -> GroundedCaption(text, phrases)
    sa1b.read_sa1b(root, ...)
    dlc_bench.read_dlc_bench(root, ...); dlc_bench.load_dlc_questions(root) -> {ann_id: question record}
    maskgroups_hq.read_maskgroups_hq(json_or_jsonl, image_root, ...)
    hf.to_hf_dataset(records, *, embed_images=False) -> datasets.Dataset; hf.from_hf_row(row) -> ImageRecord

Augmentation (`regionlib.data.augment`)::

    large_scale_jitter(image, regions, *, output_size=1024, scale_range=(0.1, 2.0), rng=None)
        -> (image (out, out, 3), regions, kept_indices)
    hflip(image, regions) -> (image, regions)     # swaps left/right words; twice = identity
    swap_left_right(text) -> str

DAM prompt augmentation (`regionlib.data.prompt_aug`, seed 003 App. H.2)::

    DEFAULT_PROMPT, PROMPTS_WITH_SUFFIX (15), PROMPTS_WITHOUT_SUFFIX (15)
    PromptAugmenter(*, sentence_p=0.2, word_p=0.2, class_name_p=0.5, seed=0)
        .sample(caption, *, class_name=None) -> AugmentedPrompt(text, kind, suffix, ...); __call__ -> str

Mask groups (`regionlib.data.mask_groups`, RAS, REFERENCE §7)::

    MaskGroupSample(image_id, kind, prompt, candidates: Regions, target: tuple[int, ...], reference=None)
    category_groups(regions) / attribute_groups(regions, attributes) / position_groups(regions) /
    relationship_groups(regions, [(subject, predicate, object)]) / referring_groups(record) /
    maskgroups_hq_groups(record) / regionworld_mask_groups(sample)
"""
