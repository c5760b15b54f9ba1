"""Drawn detections read on real photos: sizes follow the image, labels stay inside it, and
every class colour has a label text colour of WCAG AA contrast."""

import itertools

import numpy as np
import torch
from PIL import Image

from tinynas.detect.draw import (BLACK, WHITE, class_colour, contrast_ratio, draw_detections, font_size, label_box,
                                 label_font, line_width, relative_luminance, text_colour)
from tinynas.detect.nms import Detections


def test_wcag_luminance_and_contrast_match_their_definitions():
    assert relative_luminance(WHITE) == 1.0 and relative_luminance(BLACK) == 0.0
    assert contrast_ratio(WHITE, BLACK) == 21.0
    # sRGB 128 grey: ((128/255 + 0.055) / 1.055) ** 2.4 = 0.2158605
    assert abs(relative_luminance((128, 128, 128)) - 0.2158605) < 1e-6
    assert text_colour((255, 255, 0)) == BLACK and text_colour((0, 0, 128)) == WHITE


def test_class_colours_are_distinct_and_their_labels_are_legible():
    colours = [class_colour(i) for i in range(80)]
    for i, colour in enumerate(colours):
        assert contrast_ratio(colour, text_colour(colour)) >= 4.5, (i, colour)  # WCAG AA for text
    for a, b in itertools.combinations(colours[:12], 2):  # the classes a small dataset has
        assert max(abs(x - y) for x, y in zip(a, b)) >= 40, (a, b)
    assert class_colour(3) == class_colour(3)


def test_line_and_text_grow_with_the_image():
    assert line_width(640, 480) == 2 and line_width(1058, 1058) == 3 and line_width(4000, 3000) == 10
    assert font_size(320, 320) == 11 and font_size(1058, 1058) == 21
    small, large = (label_font(font_size(s, s)).getbbox("person 0.87") for s in (500, 2000))
    assert large[3] - large[1] > 2.5 * (small[3] - small[1])  # 40 px against 11 px text


def test_labels_lie_inside_the_image_above_the_box_when_there_is_room():
    assert label_box((100, 50, 200, 150), 60, 12, 640, 480, 2) == (100, 34, 164, 50)  # above
    assert label_box((100, 5, 200, 150), 60, 12, 640, 480, 2) == (100, 5, 164, 21)  # inside the top
    assert label_box((600, 50, 640, 150), 60, 12, 640, 480, 2) == (576, 34, 640, 50)  # moved left
    assert label_box((-20, -30, 40, 470), 60, 12, 640, 480, 2) == (0, 0, 64, 16)
    assert label_box((10, 478, 30, 480), 60, 12, 640, 480, 2) == (10, 462, 74, 478)  # a box at the bottom


def test_a_drawn_label_at_the_border_keeps_its_pixels_in_the_image():
    image = Image.new("RGB", (1058, 800), (40, 90, 40))  # foliage green
    detections = Detections(torch.tensor([[1000.0, 0.0, 1058.0, 60.0]]), torch.tensor([0.91]), torch.tensor([0]))
    drawn = np.asarray(draw_detections(image, detections, ["tree crown"]))
    colour = np.array(class_colour(0))
    filled = np.all(drawn == colour, axis=-1)
    rows, cols = np.nonzero(filled[:, :1000])  # the label starts left of the box: moved inside
    assert cols.size and cols.min() < 1000
    label_rows = np.unique(rows)
    assert filled[label_rows, 1057].all() and filled[0, cols.min():].all()  # up to the edges, uncut
    text = np.all(drawn == np.array(text_colour(class_colour(0))), axis=-1)
    assert text[: rows.max() + 1].sum() > 50  # the label's text is drawn, in its contrasting colour
