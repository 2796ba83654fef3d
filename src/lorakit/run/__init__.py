"""lorakit.run"""
