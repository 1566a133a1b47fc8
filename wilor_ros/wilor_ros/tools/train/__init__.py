"""Fine-tuning the WiLoR reconstructor: configuration, datasets, augmentation, losses, trainer.

Entry points: ``wilor-ros train`` (``trainer.train``) and ``wilor-ros eval`` (``tools/evaluate.py``).
See docs/training.md.
"""
