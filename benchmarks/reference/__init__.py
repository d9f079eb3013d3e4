"""The reference DiT: a Wan 2.1 t2v model that stock ComfyUI loads, trained on real MNIST digits."""
