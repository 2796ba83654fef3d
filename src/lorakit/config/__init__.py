"""lorakit.config"""
