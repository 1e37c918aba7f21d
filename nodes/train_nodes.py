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
            "model": (c.MODEL,),
            "dataset": ("STRING", {"default": "pfvg_world", "tooltip": "Folder inside ComfyUI's input folder: videos, frame folders or PFVG latents."}),
            "output_name": ("STRING", {"default": "pfvg_trained", "tooltip": "Folder name inside models/pfvg."}),
            "stage1_steps": ("INT", {"default": 20, "min": 0, "max": 1000000, "tooltip": "Teacher-forcing optimizer steps (one video each)."}),
            "stage2_steps": ("INT", {"default": 20, "min": 0, "max": 1000000, "tooltip": "Direct Forcing optimizer steps."}),
            "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1e-1, "step": 1e-5}),
            "stage2_params": (["last-layers+semanticpack", "last-layers", "semanticpack", "all"], {"default": "last-layers+semanticpack"}),
            "window": ("INT", {"default": 9, "min": 1, "max": 64, "tooltip": "Latent frames per clip."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True}),
            "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from the last checkpoint of this output name."}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def train(self, model, dataset, output_name, stage1_steps, stage2_steps, learning_rate, stage2_params, window, fps, seed,
              resume, unique_id=None):
        from pfvg_core import comfy

        trained, path = comfy.train_model(model, dataset=dataset, output_name=output_name, stage1_steps=stage1_steps,
                                          stage2_steps=stage2_steps, lr=learning_rate, stage2_params=stage2_params,
                                          window=window, fps=fps, seed=seed, resume=resume, node_id=unique_id)
        return (trained, path)


NODES = {"PFVGDirectForcingTrain": (DirectForcingTrain, "Direct Forcing Train (PFVG)")}
