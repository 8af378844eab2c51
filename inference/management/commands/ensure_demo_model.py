import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand

from inference.models import ModelVersion
from inference.services.registry import model_version_deploy, model_version_import

DEMO_NAME = "demo-synthetic"


class Command(BaseCommand):
    help = (
        "Make sure a model is deployed: when none is, deploy the synthetic demo model, "
        "training it first (a few minutes) when it was never imported. NOT for clinical use."
    )

    def add_arguments(self, parser):
        parser.add_argument("--epochs", type=int, default=40, help="demo training epochs")
        parser.add_argument("--per-class", type=int, default=80, help="generated images a class")

    def handle(self, *args, epochs: int, per_class: int, **options):
        deployed = ModelVersion.objects.deployed()
        if deployed is not None:
            self.stdout.write(f"model deployed: {deployed}")
            return
        version = (
            ModelVersion.objects.filter(name=DEMO_NAME)
            .exclude(status=ModelVersion.Status.RETIRED)
            .first()
        )
        if version is None:
            version = self._train_and_import(epochs=epochs, per_class=per_class)
        model_version_deploy(model_version=version, actor=None, reason="demo")
        self.stdout.write(
            self.style.WARNING(
                f"deployed {version}: a SYNTHETIC demo model trained on generated images, "
                "NOT for clinical use. Import and deploy a real model from the admin."
            )
        )

    def _train_and_import(self, *, epochs: int, per_class: int) -> ModelVersion:
        from training.compare import demo_model

        self.stdout.write("no model deployed: training the synthetic demo model (a few minutes)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="leukweb-demo-model-") as out:
            folder, _ = demo_model(Path(out), name=DEMO_NAME, epochs=epochs, per_class=per_class)
            version = model_version_import(source=Path(folder))
        self.stdout.write(f"trained and imported {version} in {time.monotonic() - started:.0f}s")
        return version
