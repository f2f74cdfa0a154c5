"""Model loading, below both training and generation: hub-or-folder loading with one-line errors
(:mod:`~bci_dream.loading.hub`), diffusers pipeline folders (:mod:`~bci_dream.loading.pipeline_folder`),
the compute device (:mod:`~bci_dream.loading.compute_device`), the fine-tuned UNet adapter's file format
(:mod:`~bci_dream.loading.unet_adapter`) and the CLIP vision / image classifier loaders
(:mod:`~bci_dream.loading.vision_models`). Nothing here trains or generates."""
