import uuid

from pfvg_core.operations import DatasetOptions, TrainOptions

from . import comfy_io as io
from . import common as c


class DirectForcingTrain:
    DESCRIPTION = ("Train with the paper's recipe: stage 1 teacher forcing on the whole net, stage 2 Direct Forcing on "
                   "the output layers (+ SemanticPack). Saves to models/pfvg/<output_name> (a taken name gets a counter, "
                   "<output_name>_00001; existing = resume continues an interrupted run). Its path output says where.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MODEL, "STRING")
    RETURN_NAMES = ("model", "path")
    FUNCTION = "train"
    OUTPUT_NODE = True  # it writes a model: runs even when nothing consumes its outputs

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (c.MODEL, {"tooltip": "The model to fine-tune; the input model is unchanged (a FramePack-F1 model shares "
                                "its frozen weights with the training and copies only what trains)."}),
            "dataset": ("STRING", {"default": "pfvg_world", "tooltip": "Folder inside ComfyUI's input folder: videos or frame "
                                   "folders (embedded model), or a dataset from Build Training Dataset (FramePack-F1)."}),
            "output_name": ("STRING", {"default": "pfvg_trained", "tooltip": "Folder name inside models/pfvg (when it is taken, "
                                       "existing = new saves to <output_name>_00001, _00002, …)."}),
            **c.widgets(TrainOptions),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    @classmethod
    def IS_CHANGED(cls, **inputs):
        """Never served from ComfyUI's cache: pressing Run again trains again (with ``existing = new`` into
        ``<output_name>_00001``, …), as a user expects of a node that writes a model."""
        return uuid.uuid4().hex

    def train(self, model, dataset, output_name, unique_id=None, **inputs):
        return io.train(model, dataset, output_name, c.options(TrainOptions, inputs), node_id=unique_id)


class BuildTrainingDataset:
    DESCRIPTION = ("Encode a folder of videos (each with a .txt prompt beside it; a '0: … / [5s] …' schedule is kept per "
                   "line) into a FramePack-F1 training dataset: HunyuanVideo VAE latents, prompt features and the start "
                   "frame's SigLIP features, computed once so training never runs the encoders. Wire its output into "
                   "Direct Forcing Train's dataset.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("dataset",)
    FUNCTION = "build"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": ("VAE", {"tooltip": "HunyuanVideo's VAE (the one the generation workflow decodes with)."}),
            "clip": ("CLIP", {"tooltip": "HunyuanVideo's text encoders (DualCLIPLoader, type hunyuan_video)."}),
            "clip_vision": ("CLIP_VISION", {"tooltip": "SigLIP (the CLIP vision model of the generation workflow)."}),
            "videos": ("STRING", {"default": "pfvg_videos", "tooltip": "Folder inside ComfyUI's input folder holding the videos."}),
            "output_name": ("STRING", {"default": "pfvg_f1_dataset", "tooltip": "Dataset folder written inside the input folder."}),
            **c.widgets(DatasetOptions),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def build(self, vae, clip, clip_vision, videos, output_name, unique_id=None, **inputs):
        return (io.build_dataset(vae, clip, clip_vision, videos, output_name, c.options(DatasetOptions, inputs), node_id=unique_id),)


NODES = {"PFVGDirectForcingTrain": (DirectForcingTrain, "Direct Forcing Train (PFVG)"),
         "PFVGBuildTrainingDataset": (BuildTrainingDataset, "Build Training Dataset (PFVG)")}
