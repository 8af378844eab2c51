"""The model runtime contract shared by ``training`` (which writes artifacts) and ``inference``
(which serves them): artifact format, preprocessing, calibration, out-of-scope guard,
Grad-CAM and the predictor.

Plain Python + numpy + Pillow, with TensorFlow imported only by the modules that run a
model. It never imports Django and never imports ``training``, so a worker, a benchmark
or a notebook can load and run a packaged model with nothing else.
"""
