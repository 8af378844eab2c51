from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion
from inference.services.registry import ModelImportError, model_version_onnx_add


class Command(BaseCommand):
    help = (
        "Give every registered model version that has no ONNX graph (imported before "
        "artifacts carried one) its graph, converted and verified; analysis workers serve "
        "only that. Needs TensorFlow: run it where the heatmap worker's image or `make "
        "setup` installed it. Versions that have one are left as they are."
    )

    def handle(self, *args, **options):
        missing = [v for v in ModelVersion.objects.order_by("pk") if not v.manifest.get("onnx")]
        failed = []
        for version in missing:
            try:
                model_version_onnx_add(model_version=version)
            except (ModelImportError, FileNotFoundError) as exc:
                failed.append(str(exc))
                self.stderr.write(self.style.ERROR(f"{version}: {exc}"))
            else:
                self.stdout.write(self.style.SUCCESS(f"{version}: ONNX graph added, verified"))
        if failed:
            raise CommandError(f"{len(failed)} version(s) still have no ONNX graph")
