"""Config composition: presets carry the official recipes' numbers; typos are errors."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from pose.config import merge_checkpoint_config, register_configs, resolve_device
from pose.engine.precision import PRECISIONS

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_configs()


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="train", overrides=list(overrides))


class Recipe(NamedTuple):
    """An official recipe's numbers (recipes.md §1, §2, §5)."""

    model: str
    num_joints: int
    dataset: str
    image_size: list[int]  # (w, h), px
    heatmap_size: list[int]  # (w, h), cells
    sigma: float
    batch_size: int  # per GPU
    lr: float
    warmup_iters: int
    augmentation: tuple[float, float, float]  # scale factor, rotation factor, half-body prob


HRNET_COCO = (0.35, 45.0, 0.3)
LITE_COCO = (0.25, 30.0, 0.3)
MPII = (0.25, 30.0, 0.0)  # no half-body on MPII (HRNet: PROB_HALF_BODY -1; mmpose: no step)
COCO_256, COCO_384, MPII_256 = ([192, 256], [48, 64]), ([288, 384], [72, 96]), ([256, 256], [64, 64])
OFFICIAL_RECIPES = {
    "hrnet_w32_256x192": Recipe("hrnet_w32", 17, "coco", *COCO_256, 2.0, 32, 1e-3, 0, HRNET_COCO),
    "hrnet_w32_384x288": Recipe("hrnet_w32", 17, "coco", *COCO_384, 3.0, 32, 1e-3, 0, HRNET_COCO),
    "hrnet_w48_256x192": Recipe("hrnet_w48", 17, "coco", *COCO_256, 2.0, 32, 1e-3, 0, HRNET_COCO),
    "hrnet_w48_384x288": Recipe("hrnet_w48", 17, "coco", *COCO_384, 3.0, 24, 1e-3, 0, HRNET_COCO),
    "hrnet_w32_mpii_256x256": Recipe("hrnet_w32", 16, "mpii", *MPII_256, 2.0, 32, 1e-3, 0, MPII),
    "lite_hrnet_18_256x192": Recipe("lite_hrnet_18", 17, "coco", *COCO_256, 2.0, 64, 2e-3, 500,
                                    LITE_COCO),
    "lite_hrnet_18_384x288": Recipe("lite_hrnet_18", 17, "coco", *COCO_384, 3.0, 32, 2e-3, 500,
                                    LITE_COCO),
    "lite_hrnet_30_256x192": Recipe("lite_hrnet_30", 17, "coco", *COCO_256, 2.0, 64, 2e-3, 500,
                                    LITE_COCO),
    "lite_hrnet_30_384x288": Recipe("lite_hrnet_30", 17, "coco", *COCO_384, 3.0, 32, 2e-3, 500,
                                    LITE_COCO),
    "lite_hrnet_18_mpii_256x256": Recipe("lite_hrnet_18", 16, "mpii", *MPII_256, 2.0, 32, 2e-3,
                                         500, MPII),
    "lite_hrnet_30_mpii_256x256": Recipe("lite_hrnet_30", 16, "mpii", *MPII_256, 2.0, 32, 2e-3,
                                         500, MPII),
}

# mmpose's UDP configs (the presets' headers cite them): UDP codec, decoding and flip test.
UDP_AUGMENTATION = (0.5, 40.0, 0.3)  # mmpose 0.x: scale_factor 0.5, rot_factor 40
UDP_RECIPES = {
    "hrnet_w32_udp_256x192": Recipe("hrnet_w32", 17, "coco", *COCO_256, 2.0, 64, 5e-4, 500,
                                    UDP_AUGMENTATION),
    "hrnet_w48_udp_384x288": Recipe("hrnet_w48", 17, "coco", *COCO_384, 3.0, 32, 5e-4, 500,
                                    UDP_AUGMENTATION),
    "lite_hrnet_18_udp_256x192": Recipe("lite_hrnet_18", 17, "coco", *COCO_256, 2.0, 64, 5e-4,
                                        500, LITE_COCO),
}


@pytest.mark.parametrize("experiment", sorted(UDP_RECIPES))
def test_udp_presets_carry_mmpose_recipe(experiment):
    recipe = UDP_RECIPES[experiment]
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.name == experiment and cfg.model.name == recipe.model
    assert (cfg.data.dataset, list(cfg.data.image_size), list(cfg.data.heatmap_size),
            cfg.data.sigma) == (recipe.dataset, recipe.image_size, recipe.heatmap_size,
                                recipe.sigma)
    assert (cfg.data.scale_factor, cfg.data.rotation_factor,
            cfg.data.half_body_prob) == recipe.augmentation
    assert (cfg.data.rotation_prob, cfg.data.half_body_min_joints, cfg.data.flip) == (0.6, 8, True)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.warmup_iters) == (
        recipe.batch_size, recipe.lr, recipe.warmup_iters)
    assert cfg.train.optimizer == "adam" and list(cfg.train.milestones) == [170, 200]
    assert cfg.data.codec == "udp" and cfg.eval.post_process == "udp"
    assert cfg.eval.flip_test and not cfg.eval.shift_heatmap


@pytest.mark.parametrize("experiment", sorted(OFFICIAL_RECIPES))
def test_presets_carry_official_recipe(experiment):
    recipe = OFFICIAL_RECIPES[experiment]
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.name == experiment
    assert cfg.model.name == recipe.model and cfg.model.num_joints == recipe.num_joints
    assert cfg.data.dataset == recipe.dataset
    assert list(cfg.data.image_size) == recipe.image_size
    assert list(cfg.data.heatmap_size) == recipe.heatmap_size
    assert cfg.data.sigma == recipe.sigma
    assert (cfg.data.scale_factor, cfg.data.rotation_factor,
            cfg.data.half_body_prob) == recipe.augmentation
    assert (cfg.data.rotation_prob, cfg.data.half_body_min_joints, cfg.data.flip) == (0.6, 8, True)
    # The official recipes have no colour jitter, and train on exact full-resolution crops.
    assert cfg.data.brightness == cfg.data.contrast == cfg.data.saturation == 0
    assert not cfg.data.reduced_decoding and not cfg.data.device_augmentation
    assert cfg.data.codec == "heatmap" and cfg.eval.post_process == "quarter_offset"
    assert cfg.train.optimizer == "adam" and cfg.train.weight_decay == 0
    assert cfg.train.lr == recipe.lr
    assert (cfg.train.warmup_iters, cfg.train.warmup_ratio) == (recipe.warmup_iters, 0.001)
    assert list(cfg.train.milestones) == [170, 200] and cfg.train.lr_gamma == 0.1
    assert cfg.train.epochs == 210 and cfg.train.batch_size == recipe.batch_size
    assert cfg.train.loss == "mse" and cfg.train.use_target_weight
    assert cfg.eval.flip_test and cfg.eval.shift_heatmap


def test_every_official_preset_is_checked():
    presets = {path.stem for path in (Path(CONF_DIR) / "experiment").glob("*.yaml")}
    assert presets - {"demo"} == set(OFFICIAL_RECIPES) | set(UDP_RECIPES)


def test_default_experiment_is_hrnet_w32():
    assert compose_train().name == "hrnet_w32_256x192"


def test_overrides_of_the_contract_apply():
    cfg = compose_train("experiment=demo", "data.root=/somewhere", "train.epochs=3",
                        "train.max_steps=7", "train.batch_size=5", "data.num_workers=0",
                        "device=cpu", "eval.use_gt_boxes=false", "eval.det_file=/d.json",
                        "eval.flip_test=false")
    assert (cfg.data.root, cfg.train.epochs, cfg.train.max_steps) == ("/somewhere", 3, 7)
    assert (cfg.train.batch_size, cfg.data.num_workers, cfg.device) == (5, 0, "cpu")
    assert (cfg.eval.use_gt_boxes, cfg.eval.det_file, cfg.eval.flip_test) == (False, "/d.json",
                                                                              False)


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException) as error:
        compose_train("train.epoch=3")
    assert "train.epoch" in str(error.value)


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigCompositionException) as error:
        compose_train("train.epochs=many")
    assert "epochs" in str(error.value.__cause__ or error.value)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(MissingConfigException) as error:
        compose_train("experiment=hrnet_w99")
    message = str(error.value)
    assert "hrnet_w99" in message and "hrnet_w32_256x192" in message


def test_checkpoint_config_under_command_line_overrides():
    trained = OmegaConf.to_container(compose_train("experiment=demo", "data.root=/train/here"),
                                     resolve=True)
    trained.pop("hydra", None)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cli = compose(config_name="eval", overrides=["checkpoint=/x/best.pt",
                                                     "data.root=/elsewhere",
                                                     "eval.flip_test=false"])
    merged = merge_checkpoint_config(cli, trained, ["checkpoint=/x/best.pt",
                                                    "data.root=/elsewhere",
                                                    "eval.flip_test=false"])
    assert merged.data.root == "/elsewhere" and merged.eval.flip_test is False
    assert merged.name == "demo" and merged.model.name == trained["model"]["name"]
    assert list(merged.data.image_size) == trained["data"]["image_size"]
    assert merged.checkpoint == "/x/best.pt"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu7")


def test_every_model_has_a_config_group_entry():
    from pose.models import list_models

    group = {path.stem for path in (Path(CONF_DIR) / "model").glob("*.yaml")}
    assert group == set(list_models())
    for name in list_models():
        assert compose_train(f"model={name}").model.name == name


def test_demo_preset_runs_on_the_cpu_sized_model():
    cfg = compose_train("experiment=demo")
    assert cfg.model.name == "hrnet_w16_tiny" and cfg.data.root == "data/demo"
    # Input sizes must be multiples of 32 for HRNet's four branches to realign.
    assert all(size % 32 == 0 for size in cfg.data.image_size)
    assert [size // 4 for size in cfg.data.image_size] == list(cfg.data.heatmap_size)
    assert cfg.train.precision in PRECISIONS
