"""Lesson 05, attributions: which network works on shapes, how much of each map lies on the object, sanity checks.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from tl_lab.exercises.common import SHAPES_TEST_IMAGES, best_of
from tl_lab.exercises.questions import Choice, Number, Predict, Question

TITLE = "Attributions"


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: on shapes with 10 training images per class, which is most accurate "
                  "on the test images?",
            choices=("raw pixels", "from scratch", "frozen head", "fine-tuned"),
            needs=("shapes_raw_pixels", "shapes_scratch", "shapes_frozen_head", "shapes_fine_tune"),
            measure=best_of({"raw pixels": "shapes_raw_pixels", "from scratch": "shapes_scratch",
                             "frozen head": "shapes_frozen_head", "fine-tuned": "shapes_fine_tune"},
                            SHAPES_TEST_IMAGES),
            explanation="Raw pixels sit at chance: a linear model on pixels cannot find a shape that moves around. "
                        "From scratch, 60 images are far too few to learn vision from nothing. The frozen ImageNet "
                        "features reach roughly 0.6, and fine-tuning lands in the same place at full size (0.585 for "
                        "both in the lesson's run, a tie); with TL_LAB_FAST=1 it gets 3 epochs and stays "
                        "below the frozen head.",
            hints=("Which of the four start from features that already exist?",
                   "From how many images must the others learn their features?"),
            solution_text="answer = 'frozen head'",
        ),
        Number(
            "q2", "From section 6: what fraction of the fine-tuned network's Grad-CAM attribution (at stage5) lies "
                  "on the object, in your run?",
            read=lambda r: r["mask_energy_gradcam_stage5_fine_tune"],
            tolerance=0.0015,
            mistakes={
                "That is the frozen head's fraction; the question asks about the fine-tuned network.":
                    lambda r: r["mask_energy_gradcam_stage5_frozen_head"],
                "That is Grad-CAM at conv_head (the default layer); the question asks for stage5.":
                    lambda r: r["mask_energy_gradcam_default_fine_tune"],
                "That is the chance level (the object's share of the image, mask_area), not the attribution's "
                "share.": lambda r: r["mask_area"],
            },
            needs=("mask_energy_gradcam_stage5_fine_tune",),
            hints=("Read the RESULT line mask_energy_gradcam_stage5_fine_tune.",),
            solution_text="answer = lesson.results()['mask_energy_gradcam_stage5_fine_tune']",
        ),
        Choice(
            "q3", "Grad-CAM at the default layer (conv_head) hardly localises the shapes. Why?",
            options=(("At 64 px, conv_head's grid is 2 x 2: the map can only say which quarter of the image "
                      "mattered"),
                     "Grad-CAM only works on fine-tuned networks",
                     "conv_head has no gradients in a frozen network",
                     "The shapes are too small for any network to classify"),
            answer=0,
            why_not={1: "the method needs gradients and activations, which every network has; the frozen head's maps "
                        "are computed the same way",
                     2: "requires_grad=False stops weight updates, not gradients with respect to activations",
                     3: "the fine-tuned network classifies them well (section 3); the map is the problem, not the "
                        "network"},
            explanation="Grad-CAM's map has the resolution of the layer it reads: choose a layer whose grid fits the "
                        "image (stage5 is 4 x 4 at 64 px).",
            hints=("How many positions does conv_head's feature map have for a 64-pixel image?",),
            solution_text="answer = 0",
        ),
        Choice(
            "q4", "In the sanity check, a map that stays the same when the network's weights are randomised tells "
                  "you...",
            options=("that it explains the image (edges, contrast), not what the model learned",
                     "that the model is robust",
                     "that the method is especially faithful",
                     "nothing: randomising weights does not change predictions"),
            answer=0,
            why_not={1: "robustness is about inputs changing; here the model itself was destroyed and the map did not "
                        "notice",
                     2: "a faithful map must change when the model changes; one that does not ignores the model",
                     3: "randomised weights change the predictions completely; that is the point of the test"},
            explanation="Adebayo et al. 2018: run the sanity check before trusting a new attribution method.",
            solution_text="answer = 0",
        ),
    ]
