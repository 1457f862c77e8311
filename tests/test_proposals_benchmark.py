import numpy as np

from soco_proposals.benchmark import (
    FELZENSZWALB_FLOOR,
    benchmark,
    format_report,
    pairwise_iou_xywh,
    recall,
)


def test_iou_uses_inclusive_pixel_extents():
    a = np.array([[0, 0, 9, 9]])  # 10 x 10 pixels
    b = np.array([[0, 0, 9, 9], [5, 0, 9, 9], [10, 10, 3, 3]])  # same, half overlap, disjoint
    np.testing.assert_allclose(pairwise_iou_xywh(a, b), [[1.0, 50 / 150, 0.0]])


def test_recall_at_threshold():
    targets = np.array([[0, 0, 9, 9], [20, 20, 9, 9]])
    assert recall(targets, np.array([[0, 0, 9, 9]])) == 0.5
    assert recall(targets, np.array([[0, 0, 9, 8], [21, 20, 9, 9]])) == 1.0
    assert recall(targets, np.zeros((0, 4))) == 0.0 and recall(np.zeros((0, 4)), targets) == 1.0


def test_benchmark_report_on_a_tiny_image():
    rng = np.random.default_rng(0)
    images = {"noise": rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)}
    stats = benchmark(images, [FELZENSZWALB_FLOOR, "reference"], log=lambda line: None)
    assert stats["reference"].recalls == [1.0] and stats["reference"].exact == [True]
    report = format_report(stats, images, cores=64)
    assert "| reference | " in report and "| felzenszwalb-floor | " in report and "| wall h |" in report
