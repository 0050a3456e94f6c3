
import pytest

from pipeline.config import ConfigError, section
from train.data.config import LoaderConfig

def test_defaults():
    cfg = LoaderConfig()
    assert cfg.num_frames == 4 and cfg.image_size == 128 and cfg.num_workers == 2 and cfg.max_len == 32
    assert cfg.horizontal_flip is False and cfg.hue == 0.0


def test_horizontal_flip_cannot_be_enabled():
    with pytest.raises(ConfigError, match=r"loader\.horizontal_flip: cannot be enabled.*left/right"):
        section({"loader": {"horizontal_flip": True}}, LoaderConfig, "loader")


@pytest.mark.parametrize("bad, field", [
    ({"hue": 90}, "hue"),
    ({"num_frames": 0}, "num_frames"),
    ({"image_size": 95}, "image_size"),
    ({"backend": "gpu"}, "backend"),
    ({"sampling": "dense"}, "sampling"),
    ({"resampled": True}, "epoch_length"),
    ({"crop_scale": [0.9, 0.5]}, "crop_scale"),
    ({"batch_size": "sixteen"}, "batch_size"),
])
def test_bad_values_name_their_key(bad, field):
    with pytest.raises(ConfigError, match=rf"^loader\.{field}:"):
        section({"loader": bad}, LoaderConfig, "loader")
