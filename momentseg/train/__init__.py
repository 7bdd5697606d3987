"""Fine-tuning MomentSeg: samples, losses, the trainable model and the accelerate loop (``momentseg train``)."""
