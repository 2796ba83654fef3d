"""`lorakit try RUN`: render with a run's LoRA in the user's running ComfyUI.

workflow.py (pure): the API-format graph per model family, the prompts and the strengths.
render.py (impure): ComfyUI checks (base model and LoRA visible), submit, follow, fetch.
grid.py: the prompts × strengths grid (Pillow). The HTTP client is lorakit.gpu.comfyui.
"""
