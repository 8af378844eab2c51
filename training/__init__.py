"""Offline training pipeline for LeukWeb: data, augmentation, models, evaluation, packaging.

Plain Python + TensorFlow/Keras + scikit-learn. Never imports Django, so it runs from a
shell, a notebook or a test without a database. Submodules import TensorFlow lazily
where they can, so ``import training`` and ``python -m training --help`` stay fast.
"""

__all__ = ["FORMAT_VERSION"]

#: Version of the packaged-artifact layout (manifest.json ``format_version``).
FORMAT_VERSION = 2  # 2: adds the out-of-scope guard (ood.npz)
