"""Readers of framework weight files (torch.save, safetensors, Keras, ONNX) that need no framework."""
