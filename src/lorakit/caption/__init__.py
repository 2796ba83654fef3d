"""Automatic captions: a WD14-style ONNX tagger and a BLIP sentence captioner (lorakit[caption])."""
