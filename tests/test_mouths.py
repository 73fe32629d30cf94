"""Landmark-aligned mouth crops: the warp maths, O-Net landmarks on real faces, steadiness under head motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.face_detect import FaceDetector, LandmarkModel
from pipeline.mouths import (
    TEMPLATE,
    FaceRegion,
    aligned_mouths,
    box_landmarks,
    mouth_warp,
    onet_patch,
    similarity,
    steady_landmarks,
)


def test_similarity_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = np.deg2rad(12), 1.7, np.array([30.0, -8.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = TEMPLATE @ (scale * rotation).T + shift
    matrix = similarity(TEMPLATE, moved)
    assert np.allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    assert np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_steady_landmarks_fill_untrusted_frames_and_fall_back_to_the_box():
    boxes = np.tile([10.0, 20.0, 122.0, 132.0], (5, 1))
    points = np.stack([box_landmarks(b) for b in boxes]) + np.arange(5)[:, None, None]
    trusted = np.array([True, False, False, True, True])
    filled = steady_landmarks(points.copy(), trusted, boxes, 1)
    assert np.allclose(filled[1], points[0] + (points[3] - points[0]) / 3)  # linear between trusted frames
    none = steady_landmarks(points, np.zeros(5, bool), boxes, 1)
    assert np.allclose(none[0], TEMPLATE + [10, 20])  # the template placed in the box (side 112)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def face():
    """A real face, its MTCNN box and five landmarks from the full detector."""
    from facenet_pytorch import MTCNN

    image = _astronaut()
    boxes, _, points = MTCNN(keep_all=True, device="cpu", post_process=False).detect(image[None], landmarks=True)
    return image, np.asarray(boxes[0][0], float), np.asarray(points[0][0], float)


def test_onet_on_a_box_finds_the_detectors_landmarks(face):
    image, box, detected = face
    for jitter in ([0, 0, 0, 0], [6, -5, 6, -5], [-8, 4, 4, 10]):  # interpolated boxes are off by a few pixels
        patch, squared = onet_patch(image, box + np.array(jitter, float))
        points, prob = LandmarkModel()(patch[None], squared[None])
        side = box[2] - box[0]
        assert prob[0] > 0.9
        assert np.abs(points[0] - detected).max() < 0.06 * side, (jitter, points[0], detected)


def test_the_mouth_stays_put_in_the_crop_when_the_head_moves(face):
    """Shift, scale and rotate the whole frame: the aligned crop barely changes, a box crop would slide."""
    image, box, _ = face
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    crops = []
    for angle, zoom, dx, dy in [(0, 1.0, 0, 0), (8, 1.15, 25, -12), (-6, 0.9, -20, 15)]:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
        matrix[:, 2] += (dx, dy)
        moved = cv2.warpAffine(image, matrix, (w, h))
        moved_box = cv2.transform(box.reshape(2, 1, 2), matrix).reshape(4)
        patch, squared = onet_patch(moved, moved_box)
        points, _ = LandmarkModel()(patch[None], squared[None])
        region = FaceRegion.cut(cv2.cvtColor(moved, cv2.COLOR_RGB2GRAY), moved_box)
        crops.append(aligned_mouths([region], points, 32, 48)[0].astype(float))
    for other in crops[1:]:
        assert np.abs(other - crops[0]).mean() < 14, np.abs(other - crops[0]).mean()
    assert crops[0].std() > 10  # a real image, not a flat border


def test_mouth_warp_puts_the_mouth_corners_where_the_template_says():
    matrix = mouth_warp(TEMPLATE * 2 + 40, 32, 48)
    corners = np.hstack([TEMPLATE[3:] * 2 + 40, np.ones((2, 1))]) @ matrix.T
    target = (TEMPLATE[3:] - [24, 70]) * [48 / 64, 32 / 42]  # MOUTH_REGION onto a 48 x 32 crop
    assert np.abs(corners - target).max() < 0.5
    assert 0 < corners[0, 0] < 24 < corners[1, 0] < 48 and 16 < corners[0, 1] < 32


def test_detector_boxes_feed_the_landmark_model_and_no_patches_give_no_landmarks():
    image = _astronaut()
    boxes, _ = FaceDetector("cpu", 0.9, 40, 480).detect([image])[0]
    patch, squared = onet_patch(image, boxes[0])
    _, prob = LandmarkModel()(patch[None], squared[None])
    assert prob[0] > 0.9
    points, probs = LandmarkModel()(np.zeros((0, 48, 48, 3), np.uint8), np.zeros((0, 4)))
    assert points.shape == (0, 5, 2) and probs.shape == (0,)
