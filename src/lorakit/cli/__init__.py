"""lorakit.cli"""
