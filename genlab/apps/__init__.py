"""Applications built on the models: inpainting (more to come: anomaly detection, oversampling, synthesis)."""
