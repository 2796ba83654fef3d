"""lorakit: a folder of images in, a trained LoRA out (wraps kohya-ss sd-scripts)."""

__version__ = "0.1.0"
