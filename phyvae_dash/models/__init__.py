"""Models and training: PyTorch VAEs, the boundary loss, input transforms and `fit`."""
