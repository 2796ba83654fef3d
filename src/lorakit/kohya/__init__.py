"""lorakit.kohya"""
