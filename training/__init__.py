"""Offline training pipeline for LeukWeb: data, augmentation, models, evaluation, packaging.

Plain Python + TensorFlow/Keras + scikit-learn. Never imports Django, so it runs from a
shell, a notebook or a test without a database. What a packaged model needs at run time
(artifact format, preprocessing, calibration, guard, layers) lives in ``runtime``, which
this package imports. Submodules import TensorFlow lazily where they can, so
``import training`` and ``python -m training --help`` stay fast.
"""
