"""CodeHierarchy: the one owner of the hop ratios, the sample rate and the codebook size that a
VQ-VAE, its codes and its priors share, and their one check."""

import pytest

from jukebox_tf.codes.hierarchy import CodeHierarchy, HierarchyError, PriorFacts
from jukebox_tf.errors import JukeboxError
from jukebox_tf.vqvae import get_preset

HIERARCHY = CodeHierarchy(22050, (8, 32, 128), 64)


def test_it_reads_a_vqvae_config_and_a_codes_manifest_alike():
    config = get_preset("tiny")
    manifest = {"sample_rate": config.sample_rate, "hop_lengths": list(config.hop_lengths),
                "l_bins": config.l_bins, "levels": config.levels}
    assert CodeHierarchy.of(config) == CodeHierarchy.of(manifest)
    assert CodeHierarchy.of(config).levels == config.levels
    assert CodeHierarchy.of(config).top_level == config.levels - 1


def test_hop_ratios():
    assert HIERARCHY.hop_ratios() == [4, 4]
    assert HIERARCHY.hop_ratio(0) == 4
    with pytest.raises(HierarchyError, match="level 2 has no level above"):
        HIERARCHY.hop_ratio(2)
    with pytest.raises(HierarchyError, match="level 1 is not a whole number of level-0"):
        CodeHierarchy(22050, (8, 12, 48), 64).hop_ratio(0)


@pytest.mark.parametrize("facts, message", [
    (PriorFacts(levels=4), "X: the prior was trained on codes of a 4-level VQ-VAE, the VQ-VAE "
                           "has 3 levels"),
    (PriorFacts(level=3), "X: the prior models level 3, the VQ-VAE has levels 0..2"),
    (PriorFacts(l_bins=128), "X: the prior has a codebook size of 128 codes, the VQ-VAE's "
                             r"codebook has 64 \(l_bins\)"),
    (PriorFacts(hop_lengths=(4, 32, 128)), r"X: the prior's codes have hop lengths \(4, 32, "
                                           r"128\), the VQ-VAE's \(8, 32, 128\)"),
    (PriorFacts(sample_rate=16000), "X: the prior was trained on codes of 16000 Hz audio, the "
                                    "VQ-VAE works at a sample rate of 22050 Hz"),
    (PriorFacts(level=0, hop_ratio=2), r"X: the level-0 prior upsamples the level above by 2, "
                                       r"the VQ-VAE's hop lengths \(8, 32, 128\) by 4"),
])
def test_each_disagreement_is_named(facts, message):
    with pytest.raises(HierarchyError, match=f"^{message}$"):
        HIERARCHY.check(facts, "X")


def test_what_is_unknown_is_not_checked():
    HIERARCHY.check(PriorFacts(), "X")
    HIERARCHY.check(PriorFacts(level=2, hop_ratio=7, l_bins=64, sample_rate=22050), "X")
    CodeHierarchy(None, (8, 32, 128), None).check(PriorFacts(l_bins=3, sample_rate=1), "X")
    with pytest.raises(HierarchyError, match="upsamples the level above by 7"):
        CodeHierarchy(None, (8, 32, 128), None).check(PriorFacts(level=1, hop_ratio=7), "X")


def test_audio_rate_and_error_kinds():
    HIERARCHY.check_audio_rate(22050, "data")
    with pytest.raises(HierarchyError, match="^data: audio at 44100 Hz, the VQ-VAE works at "
                                             "22050 Hz; re-ingest with --sample-rate 22050$"):
        HIERARCHY.check_audio_rate(44100, "data")
    # The CLI prints JukeboxErrors; the library's model-level checks were ValueErrors.
    assert issubclass(HierarchyError, JukeboxError) and issubclass(HierarchyError, ValueError)
