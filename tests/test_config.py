"""Config composition: presets carry the official recipes' numbers; typos are errors."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from pose.config import (
    check_eval_config,
    configured_num_joints,
    decode_settings,
    merge_checkpoint_config,
    register_configs,
    resolve_device,
)
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
COCO_256, COCO_384 = ([192, 256], [48, 64]), ([288, 384], [72, 96])
MPII_256 = ([256, 256], [64, 64])
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
    assert cfg.eval.flip_test and cfg.eval.shift_heatmap is False
    check_eval_config(cfg.eval, cfg.data.codec)
    decoding = decode_settings(cfg)
    assert (decoding.post_process, decoding.shift_heatmap, decoding.sigma) == (
        "udp", False, recipe.sigma)


@pytest.mark.parametrize("experiment", sorted(OFFICIAL_RECIPES))
def test_presets_carry_official_recipe(experiment):
    recipe = OFFICIAL_RECIPES[experiment]
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.name == experiment
    # The keypoint set gives the joint count (an MPII preset states it, in agreement).
    assert cfg.model.name == recipe.model and configured_num_joints(cfg) == recipe.num_joints
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
    assert presets - {"demo", "demo_quadruped"} == set(OFFICIAL_RECIPES) | set(UDP_RECIPES)


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
    assert cfg.model.name == "hrnet_w16_nano" and cfg.data.root == "data/demo"
    # Input sizes must be multiples of 32 for HRNet's four branches to realign.
    assert all(size % 32 == 0 for size in cfg.data.image_size)
    assert [size // 4 for size in cfg.data.image_size] == list(cfg.data.heatmap_size)
    assert cfg.train.precision in PRECISIONS


def test_the_quadruped_demo_reads_its_files_under_data_root():
    cfg = compose_train("experiment=demo_quadruped", "data.root=/some/where")
    assert cfg.data.keypoints == "quadruped" and cfg.model.num_joints is None
    assert cfg.data.train_annotation_file == (
        "/some/where/annotations/quadruped_keypoints_train2017.json")
    assert cfg.data.val_image_dir == "/some/where/val2017"
    assert all(size % 32 == 0 for size in cfg.data.image_size)
    assert [size // 4 for size in cfg.data.image_size] == list(cfg.data.heatmap_size)


class _CocoLikeDataset:
    """What an evaluator reads off a COCO-format dataset: the parsed file, the keypoints and the
    people of PCK and EPE (each annotation a person, predicted by the crop of the same index)."""

    def __init__(self, annotations: dict) -> None:
        from pose.data.keypoints import COCO_KEYPOINTS

        self.annotations = annotations
        self.annotation_file = Path("person_keypoints_val.json")
        self.keypoints = COCO_KEYPOINTS
        self.category_id = 1

    def person_ground_truth(self):
        import torch

        from pose.evaluation.pck import PersonGroundTruth

        people = self.annotations["annotations"]
        keypoints = torch.tensor([person["keypoints"] for person in people],
                                 dtype=torch.float64).reshape(len(people), -1, 3)
        return PersonGroundTruth(
            image_ids=torch.tensor([person["image_id"] for person in people]),
            joints=keypoints[..., :2], labelled=keypoints[..., 2] > 0,
            boxes=torch.tensor([person["bbox"] for person in people], dtype=torch.float64),
            crop_person=torch.tensor([0, -1]))


def test_eval_nms_reaches_the_evaluator():
    import torch

    from pose.config import build_evaluator
    from pose.evaluation.predictions import Predictions

    cfg = compose_train("experiment=demo", "eval.nms=soft_oks")
    check_eval_config(cfg.eval, cfg.data.codec)
    pose = [[60.0 + 5 * k, 40.0 + 8 * k, 2] for k in range(17)]
    annotations = {
        "images": [{"id": 1, "width": 300, "height": 300, "file_name": "1.jpg"}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "num_keypoints": 17, "area": 9000.0, "bbox": [60, 40, 80, 128],
                         "keypoints": [value for joint in pose for value in joint]}]}
    # The ground-truth pose twice (the copy one pixel off): soft OKS-NMS keeps both (it decays
    # the copy's score only to rank it); OKS-NMS keeps one; "none" both.
    keypoints = torch.tensor([[joint[:2] for joint in pose]] * 2, dtype=torch.float32)
    keypoints[1, :, 0] += 1
    predictions = Predictions(
        keypoints=keypoints, maxvals=torch.full((2, 17), 0.9), centers=torch.zeros(2, 2),
        scales=torch.ones(2, 2), box_scores=torch.tensor([1.0, 0.9]),
        image_ids=torch.tensor([1, 1]), indices=torch.arange(2))
    counts = {}
    for method in ("oks", "soft_oks", "none"):
        cfg.eval.nms = method
        evaluator = build_evaluator(cfg, _CocoLikeDataset(annotations), torch.device("cpu"))
        evaluation = evaluator(predictions)
        counts[method] = len(evaluation.results)
        assert evaluation.metrics["AP"] == pytest.approx(1.0)  # the best pose is exact
        assert evaluation.metrics["PCK@0.05"] == 1.0 and evaluation.metrics["EPE"] == 0.0
    assert counts == {"oks": 1, "soft_oks": 2, "none": 2}
    cfg.eval.nms = "greedy"
    with pytest.raises(ValueError, match="eval.nms='greedy' is not known"):
        check_eval_config(cfg.eval, cfg.data.codec)


@pytest.mark.parametrize(("post_process", "shift"), [
    ("quarter_offset", True), ("dark", True), ("none", True), ("udp", False)])
def test_shift_heatmap_defaults_to_the_decodings(post_process, shift):
    codec = "udp" if post_process == "udp" else "heatmap"
    cfg = compose_train("experiment=demo", f"data.codec={codec}",
                        f"eval.post_process={post_process}")
    assert cfg.eval.shift_heatmap is None
    assert decode_settings(cfg).shift_heatmap is shift
    # An explicit value wins over the decoding's default.
    cfg.eval.shift_heatmap = not shift
    assert decode_settings(cfg).shift_heatmap is (not shift)


@pytest.mark.parametrize(("codec", "post_process"), [
    ("udp", "quarter_offset"), ("udp", "dark"), ("heatmap", "udp")])
def test_codec_and_decoding_must_match(codec, post_process):
    cfg = compose_train("experiment=demo", f"data.codec={codec}",
                        f"eval.post_process={post_process}")
    with pytest.raises(ValueError, match=(f"^data.codec={codec} does not go with "
                                          f"eval.post_process={post_process}: ")):
        check_eval_config(cfg.eval, cfg.data.codec)


def test_unknown_codec_is_named():
    cfg = compose_train("experiment=demo", "data.codec=udpp")
    with pytest.raises(ValueError, match="data.codec='udpp' is not known: expected one of "
                                         "heatmap, dark, udp"):
        check_eval_config(cfg.eval, cfg.data.codec)
