"""Tools around a loaded model: TorchScript/ONNX export and speed/memory measurement."""
