"""Whether an embedded ICC profile is sRGB, judged by what it does (its primaries and tone curves), as
the pipeline needs it to leave such pictures' pixels alone."""
import os

import pytest

from imageserver.imaging import icc
from tests import pictures

ICC = "/usr/share/color/icc"


def profile(path: str) -> bytes:
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (make install installs it)")
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("path", [f"{ICC}/sRGB.icc", f"{ICC}/colord/sRGB.icc"])
def test_srgb_profiles_of_two_makers_are_srgb(path):
    # icc-profiles-free's (v2, tone curves as 1024-entry tables) and colord's (v4, parametric curves)
    assert icc.is_srgb(profile(path))


def test_an_srgb_profile_built_from_its_numbers_is_srgb():
    assert icc.is_srgb(pictures.icc_profile())


@pytest.mark.parametrize("path", [f"{ICC}/compatibleWithAdobeRGB1998.icc", f"{ICC}/colord/AdobeRGB1998.icc",
                                  f"{ICC}/colord/ProPhotoRGB.icc", f"{ICC}/colord/Rec709.icc",
                                  f"{ICC}/Gray.icc", f"{ICC}/ITULab.icc"])
def test_other_profiles_are_not_srgb(path):
    assert not icc.is_srgb(profile(path))


@pytest.mark.parametrize("curve", [pictures.gamma_curve(1.0), pictures.gamma_curve(2.2),
                                   pictures.parametric_curve(0, 2.4)])
def test_srgb_primaries_with_another_tone_curve_are_not_srgb(curve):
    # Linear-light sRGB, gamma 2.2 "sRGB" and a pure 2.4 power curve map colours otherwise.
    assert not icc.is_srgb(pictures.icc_profile(curve=curve))


def test_other_primaries_with_srgb_curves_are_not_srgb():
    display_p3 = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
    assert not icc.is_srgb(pictures.icc_profile(display_p3))


def test_a_damaged_profile_is_not_srgb():
    good = profile(f"{ICC}/sRGB.icc")
    for damaged in (b"", good[:100], good[:200], good[:-100], b"\x00" * 4000, good[:128] + b"\xff" * 4):
        assert not icc.is_srgb(damaged)


def test_answers_are_kept_by_digest_not_by_the_profile_itself():
    # A JPEG's profile may be megabytes: what is kept of the last 64 is their answers.
    big = [pictures.icc_profile(extra_tags=((b"desc", bytes([n]) * 2**20),)) for n in range(70)]
    assert all(icc.is_srgb(one) for one in big)
    kept = icc._SRGB_ANSWERS
    assert len(kept) == icc.KEPT_ANSWERS
    assert all(len(key) == 16 and isinstance(answer, bool) for key, answer in kept.items())
