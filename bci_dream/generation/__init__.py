"""Image generation: diffusers pipelines, model loading, and tiny random-weight models for tests."""
