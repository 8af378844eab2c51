from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from inference.models import ModelVersion
from inference.services.evaluation import model_version_evaluate
from training.data import DatasetError, read_label_map
from training.report import local_evaluation_warnings, reported_test_accuracy


class Command(BaseCommand):
    help = (
        "Score a registered model on a labelled folder of this site's images (one sub-folder "
        "per class) through the worker's own path, and keep the result beside its training "
        "report on the registry page."
    )

    def add_arguments(self, parser):
        parser.add_argument("data_dir", type=Path, help="labelled images: DATA_DIR/<class>/*")
        parser.add_argument(
            "--model",
            metavar="NAME:VERSION",
            default=None,
            help="the version to score (default: the deployed one)",
        )
        parser.add_argument(
            "--label-map",
            type=Path,
            default=None,
            metavar="FILE",
            help="folder name -> class (CSV 'folder,label' or JSON), when folders are named "
            "otherwise than the model's classes",
        )
        parser.add_argument("--user", default=None, help="the administrator running it")
        parser.add_argument("--note", default="", help="what this set is (kept with the result)")

    def handle(self, *args, data_dir, model, label_map, user, note, **options):
        version = self._version(model)
        actor = self._admin(user)
        try:
            mapping = read_label_map(label_map) if label_map else None
            evaluation = model_version_evaluate(
                model_version=version, data_dir=data_dir, actor=actor, label_map=mapping, note=note
            )
        except (DatasetError, FileNotFoundError) as exc:
            raise CommandError(f"{data_dir}: {exc}") from exc
        result = evaluation.result
        metrics = result["metrics"]
        review = result["review"]
        lines = [
            f"{version} on {data_dir}: {result['n']} images "
            f"({', '.join(result['classes_present'])}), {result['seconds']:.1f} s",
            f"  accuracy {metrics['accuracy']:.1%}, macro F1 {metrics['macro_f1_present']:.3f}, "
            f"ECE {result['ece']:.3f}",
            f"  needs review (confidence < {review['threshold']:.2f}): "
            f"{review['flagged_fraction']:.1%} of images; accuracy of the rest "
            + (
                "n/a"
                if review["accepted_accuracy"] is None
                else f"{review['accepted_accuracy']:.1%}"
            ),
        ]
        if result["out_of_scope"]:
            lines.append(f"  out of scope: {result['out_of_scope']['fraction']:.1%} of images")
        baseline = result["colour_baseline"]
        lines.append(
            f"  colour baseline: {baseline['accuracy']:.1%} ({baseline['folds']}-fold CV)"
            if "accuracy" in baseline
            else f"  colour baseline: {baseline['skipped']}"
        )
        self.stdout.write("\n".join(lines))
        for warning in local_evaluation_warnings(result, reported_test_accuracy(version.report)):
            self.stdout.write(self.style.WARNING(f"WARNING: {warning}"))
        self.stdout.write(self.style.SUCCESS(f"kept as evaluation #{evaluation.pk} of {version}"))

    def _version(self, spec: str | None) -> ModelVersion:
        if spec is None:
            version = ModelVersion.objects.deployed()
            if version is None:
                raise CommandError("no model is deployed: name one with --model NAME:VERSION")
            return version
        name, sep, number = spec.rpartition(":")
        if not sep:
            raise CommandError(f"--model {spec!r}: expected NAME:VERSION")
        try:
            return ModelVersion.objects.get(name=name, version=number)
        except ModelVersion.DoesNotExist as exc:
            raise CommandError(f"no model version {name} {number} is registered") from exc

    def _admin(self, username: str | None) -> User | None:
        if username is None:
            return None
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(f"no user {username!r}") from exc
        if not user.is_admin:
            raise CommandError(f"{username} is not an administrator")
        return user
