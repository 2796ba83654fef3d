"""lorakit.gpu"""
