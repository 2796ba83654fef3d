"""lorakit.report"""
