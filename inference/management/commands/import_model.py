import importlib.util
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.services.registry import (
    ModelImportError,
    RegistryError,
    model_version_deploy,
    model_version_import,
)


class Command(BaseCommand):
    help = (
        "Register a packaged model artifact folder: hashes, and its ONNX graph against its "
        "verification batch; where TensorFlow is installed also the Keras model itself, "
        "and an artifact packaged without a graph gets one, converted and verified."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="artifact folder with model.keras and manifest")
        parser.add_argument("--deploy", action="store_true", help="deploy it once imported")
        parser.add_argument("--reason", default="", help="why it is deployed (with --deploy)")
        parser.add_argument(
            "--accept-new-classes",
            action="store_true",
            help="deploy even though its classes differ from the deployed model's",
        )

    def handle(
        self, *args, path: Path, deploy: bool, reason: str, accept_new_classes: bool, **options
    ):
        # The full check needs TensorFlow, which only the heatmap workers' image carries.
        keras_check = importlib.util.find_spec("tensorflow") is not None
        if not keras_check:
            self.stdout.write("no TensorFlow here: the Keras model is checked by a heatmap worker")
        try:
            version = model_version_import(source=path, keras_check=keras_check)
        except ModelImportError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"imported {version} ({version.content_hash})"))
        if version.is_synthetic:
            self.stdout.write(self.style.WARNING("synthetic demo model: not for clinical use"))
        if deploy:
            try:
                model_version_deploy(
                    model_version=version,
                    actor=None,
                    reason=reason,
                    accept_new_classes=accept_new_classes,
                )
            except RegistryError as exc:
                raise CommandError(f"imported, but not deployed: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(f"deployed {version}"))
