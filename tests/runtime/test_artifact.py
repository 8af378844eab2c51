"""The artifact format without a model: what a manifest must hold.

Writing and loading whole artifacts is tested on a real training run in
tests/training/test_end_to_end.py and on tiny models in tests/inference.
"""

import pytest

from runtime.artifact import ArtifactError, Manifest


def test_manifest_validation_names_the_problem():
    with pytest.raises(ArtifactError, match="missing keys"):
        Manifest.from_dict({"name": "x"})
