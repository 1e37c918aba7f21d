from pfvg_core.operations import TrainOptions

from . import comfy_io as io
from . import common as c


class DirectForcingTrain:
    DESCRIPTION = ("Train with the paper's recipe: stage 1 teacher forcing on the whole net, stage 2 Direct Forcing on "
                   "the output layers (+ SemanticPack). Saves to models/pfvg/<output_name>; resumes an interrupted run.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MODEL, "STRING")
    RETURN_NAMES = ("model", "path")
    FUNCTION = "train"
    OUTPUT_NODE = True  # it writes a model: runs even when nothing consumes its outputs

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (c.MODEL, {"tooltip": "The model to fine-tune (copied: the input model is unchanged)."}),
            "dataset": ("STRING", {"default": "pfvg_world", "tooltip": "Folder inside ComfyUI's input folder: videos, frame folders or PFVG latents."}),
            "output_name": ("STRING", {"default": "pfvg_trained", "tooltip": "Folder name inside models/pfvg."}),
            **c.widgets(TrainOptions),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def train(self, model, dataset, output_name, unique_id=None, **inputs):
        return io.train(model, dataset, output_name, c.options(TrainOptions, inputs), node_id=unique_id)


NODES = {"PFVGDirectForcingTrain": (DirectForcingTrain, "Direct Forcing Train (PFVG)")}
