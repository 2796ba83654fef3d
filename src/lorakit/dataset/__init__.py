"""lorakit.dataset"""
