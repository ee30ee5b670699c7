"""The zoo's conformance kit, run on this plugin: what every plugin author should do."""

import zoo
from zoo.testing import check_vocoder


def test_noise_vocoder_conforms(tmp_path):
    check_vocoder("noise", tmp_path=tmp_path)


def test_pretrained_card_loads():
    voc = zoo.load("noise")  # the card's default model: noise.demo
    assert voc.architecture == "noise"
    assert float(voc.gain) == 0.5
