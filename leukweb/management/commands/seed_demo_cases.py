"""Seed demo records at scale: patients, cases, images, model answers, verdicts, sign-offs.

For trying the pages and measuring them (``python -m benchmarks.pages``): 100,000 cases
with everything a worker and a reviewer leave behind take a few minutes on 2 cores,
because rows go in with bulk_create, a few thousand cases at a time, and every image row
points at one of a handful of stored JPEGs (a demo row needs a real file to show, not a
unique one). It lives with the project because a case's record spans cases, inference
and reviews.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.utils import timezone
from PIL import Image, ImageDraw

from accounts.models import Role, Team, User
from cases.models import Case, Patient, SmearImage
from cases.uploads import CleanImage, image_clean
from inference.case_result import case_answer
from inference.models import CaseAnalysis, CaseResult, HeatmapState, ModelVersion, Prediction
from reviews.models import INCONCLUSIVE, Review, SignOff

# Cases per transaction: big enough for bulk inserts to pay, small enough to stay light.
CHUNK = 2000
BATCH = 1000
# Distinct stored smears that the image rows share.
POOL = 8
# Of the cases not analysed: waiting for a worker, being analysed, failed.
UNFINISHED = [Case.Status.SUBMITTED, Case.Status.ANALYSING, Case.Status.FAILED]


def _demo_smear(seed: int) -> bytes:
    """A 256 px pink field with purple 'cells': a recognisable stand-in, made in milliseconds."""
    rng = random.Random(seed)  # noqa: S311 - demo data, repeatable on purpose
    image = Image.new("RGB", (256, 256), (238, 205, 214))
    draw = ImageDraw.Draw(image)
    for _ in range(18):
        x, y, r = rng.randrange(256), rng.randrange(256), rng.randrange(8, 20)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(200, 120, 150))
    x, y = rng.randrange(40, 216), rng.randrange(40, 216)
    draw.ellipse((x - 26, y - 26, x + 26, y + 26), fill=(90, 40, 130))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True)
class StoredSmear:
    file: str
    thumbnail: str
    clean: CleanImage


@contextmanager
def _row_timestamps(*record_types: type[models.Model]) -> Iterator[None]:
    """Let bulk_create keep the times set on the rows: a seeded case was opened months ago
    and its answers and verdicts came after it, where auto_now_add would make them all
    'now' (and updating 100,000 rows afterwards costs more than inserting them)."""
    fields = [
        field
        for record_type in record_types
        for field in record_type._meta.concrete_fields
        if isinstance(field, models.DateField) and field.auto_now_add
    ]
    for field in fields:
        field.auto_now_add = False
    try:
        yield
    finally:
        for field in fields:
            field.auto_now_add = True


class Command(BaseCommand):
    help = (
        "Seed COUNT demo patients with one case each, spread over the --team teams and over "
        "the past year: their images (every row points at one of 8 small stored JPEGs "
        "shared by many rows, with its thumbnail), and for the --analysed share a "
        "prediction per image and the case result by a model version (the deployed one "
        "unless --model-version), for the --reviewed share of those a reviewer's verdict, "
        "and for the --signed-off share of the reviewed a sign-off. The others wait, are "
        "being analysed or failed. Bulk inserts: 100,000 cases take a few minutes. "
        "Repeatable: the same --seed makes the same records (under new identifiers)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int, help="How many patients (one case each).")
        parser.add_argument(
            "--team",
            action="append",
            dest="teams",
            help="A team to seed into (repeat for several; cases are spread evenly). "
            "Default: Haematology A.",
        )
        parser.add_argument("--images-per-case", type=int, default=2, help=f"0 to {POOL}.")
        parser.add_argument("--user", help="Username shown as the submitter of every case.")
        parser.add_argument(
            "--reviewer",
            action="append",
            dest="reviewers",
            help="Username of a reviewer who writes the verdicts (repeatable). Default: one "
            "demo reviewer per team, made without a password (it cannot sign in).",
        )
        parser.add_argument(
            "--model-version",
            type=int,
            help="Primary key of the version that made the answers. Default: the deployed one.",
        )
        parser.add_argument(
            "--analysed",
            type=float,
            default=0.9,
            help="Share of cases analysed (predictions and a case result). Default 0.9.",
        )
        parser.add_argument(
            "--reviewed",
            type=float,
            default=0.6,
            help="Share of the analysed cases with a reviewer's verdict. Default 0.6.",
        )
        parser.add_argument(
            "--signed-off",
            type=float,
            default=0.7,
            help="Share of the reviewed cases signed off (status reviewed). Default 0.7.",
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed, for repeatable data.")

    def handle(self, *args, count: int, images_per_case: int, seed: int, **options) -> None:
        if count < 1 or not 0 <= images_per_case <= POOL:
            raise CommandError(f"count must be positive and --images-per-case 0 to {POOL}")
        shares = {name: options[name] for name in ("analysed", "reviewed", "signed_off")}
        if any(not 0 <= share <= 1 for share in shares.values()):
            raise CommandError("--analysed, --reviewed and --signed-off are shares from 0 to 1")
        # A case without images was never submitted: it stays a draft, with nothing to analyse.
        if images_per_case == 0:
            shares["analysed"] = 0.0
        started = time.monotonic()
        teams = [Team.objects.get_or_create(name=name)[0] for name in options["teams"] or []]
        teams = teams or [Team.objects.get_or_create(name="Haematology A")[0]]
        version = self._model_version(options["model_version"]) if shares["analysed"] else None
        seeder = Seeder(
            rng=random.Random(seed),  # noqa: S311 - demo data, repeatable
            teams=teams,
            submitter=self._user(options["user"]) if options["user"] else None,
            reviewers=self._reviewers(options["reviewers"], teams),
            version=version,
            pool=[self._store(n) for n in range(POOL if images_per_case else 0)],
            images_per_case=images_per_case,
            shares=shares,
            # A fresh tag per run keeps identifiers unique however often it is run.
            run=uuid.uuid4().hex[:8],
            now=timezone.now(),
        )
        totals: dict[str, int] = {}
        for start in range(0, count, CHUNK):
            for name, n in seeder.chunk(start, min(CHUNK, count - start)).items():
                totals[name] = totals.get(name, 0) + n
            if count > CHUNK:
                self.stdout.write(f"  {min(start + CHUNK, count)} / {count} cases")
        summary = ", ".join(f"{n} {name}" for name, n in totals.items())
        self.stdout.write(
            f"Seeded {summary} in {', '.join(t.name for t in teams)} "
            f"({time.monotonic() - started:.0f} s)."
        )

    def _user(self, username: str) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def _reviewers(self, usernames: list[str] | None, teams: list[Team]) -> list[User]:
        if usernames:
            return [self._user(name) for name in usernames]
        reviewers = []
        for team in teams:
            user, made = User.objects.get_or_create(
                username=f"demo-reviewer-{team.pk}", defaults={"role": Role.REVIEWER}
            )
            if made:
                user.set_unusable_password()
                user.save(update_fields=["password"])
                user.teams.add(team)
            reviewers.append(user)
        return reviewers

    def _model_version(self, pk: int | None) -> ModelVersion:
        version = (
            ModelVersion.objects.filter(pk=pk).first() if pk else ModelVersion.objects.deployed()
        )
        if version is None:
            raise CommandError(
                "no model version to answer with: deploy one (manage.py ensure_demo_model), "
                "name one with --model-version, or seed with --analysed 0"
            )
        return version

    def _store(self, seed: int) -> StoredSmear:
        data = _demo_smear(seed)
        clean = image_clean(
            io.BytesIO(data), name="demo.jpg", max_bytes=len(data), max_pixels=65536
        )
        names = []
        for kind, content in (("", clean.content), ("-thumb", clean.thumbnail)):
            name = f"smears/demo/{clean.sha256}{kind}.jpg"
            if not default_storage.exists(name):
                name = default_storage.save(name, ContentFile(content))
            names.append(name)
        return StoredSmear(file=names[0], thumbnail=names[1], clean=clean)


@dataclass
class Seeder:
    """Writes the records of a run, one chunk of cases at a time."""

    rng: random.Random
    teams: Sequence[Team]
    submitter: User | None
    reviewers: Sequence[User]
    version: ModelVersion | None
    pool: Sequence[StoredSmear]
    images_per_case: int
    shares: dict[str, float]
    run: str
    now: datetime

    def __post_init__(self) -> None:
        # Each team's cases are reviewed by its own reviewers (any of them, when it has none).
        self.team_reviewers = {
            team.pk: [r for r in self.reviewers if r.teams.filter(pk=team.pk).exists()]
            or list(self.reviewers)
            for team in self.teams
        }

    def chunk(self, start: int, size: int) -> dict[str, int]:
        rng = self.rng
        with (
            transaction.atomic(),
            _row_timestamps(
                Patient, Case, SmearImage, Prediction, CaseResult, CaseAnalysis, Review, SignOff
            ),
        ):
            patients = Patient.objects.bulk_create(
                [
                    Patient(
                        team=self.teams[(start + i) % len(self.teams)],
                        identifier=f"DEMO-{self.run}-{start + i:06d}",
                        sex=rng.choice(Patient.Sex.values),
                        year_of_birth=rng.randrange(1930, 2020),
                        created_by=self.submitter,
                        created=self.now - timedelta(minutes=rng.randrange(365 * 24 * 60)),
                    )
                    for i in range(size)
                ],
                batch_size=BATCH,
            )
            cases = Case.objects.bulk_create(
                [self._case(patient) for patient in patients], batch_size=BATCH
            )
            images = SmearImage.objects.bulk_create(
                [image for case in cases for image in self._images(case)], batch_size=BATCH
            )
            counts = {"patients": len(patients), "cases": len(cases), "images": len(images)}
            if self.version is not None:
                counts.update(self._answers(cases, images, self.version))
        return counts

    def _case(self, patient: Patient) -> Case:
        rng = self.rng
        if not self.images_per_case:
            status = Case.Status.DRAFT
        elif rng.random() < self.shares["analysed"]:
            status = Case.Status.ANALYSED  # reviewed once signed off, in _answers
        else:
            status = rng.choice(UNFINISHED)
        return Case(
            patient=patient,
            team_id=patient.team_id,
            submitted_by=self.submitter,
            status=status,
            specimen=rng.choice(Case.Specimen.values),
            stain=rng.choice(Case.Stain.values),
            failure_reason="Demo: every image failed." if status == Case.Status.FAILED else "",
            created=patient.created,
        )

    def _images(self, case: Case) -> list[SmearImage]:
        statuses: dict[str, str] = {
            Case.Status.DRAFT: SmearImage.Status.PENDING,
            Case.Status.SUBMITTED: SmearImage.Status.PENDING,
            Case.Status.ANALYSING: SmearImage.Status.ANALYSING,
            Case.Status.FAILED: SmearImage.Status.FAILED,
        }
        status = statuses.get(case.status, SmearImage.Status.DONE)
        return [
            SmearImage(
                case=case,
                file=smear.file,
                thumbnail=smear.thumbnail,
                original_name=f"demo-{n + 1}.jpg",
                sha256=smear.clean.sha256,
                width=smear.clean.width,
                height=smear.clean.height,
                format=smear.clean.format,
                size_bytes=len(smear.clean.content),
                uploaded_by=self.submitter,
                uploaded=case.created,
                status=status,
                failure_reason="Demo: not analysed." if status == SmearImage.Status.FAILED else "",
                status_changed=case.created,
                queued=None if case.status == Case.Status.DRAFT else case.created,
            )
            for n, smear in enumerate(self.rng.sample(list(self.pool), self.images_per_case))
        ]

    def _answers(
        self, cases: list[Case], images: list[SmearImage], version: ModelVersion
    ) -> dict[str, int]:
        """Predictions, case results, verdicts and sign-offs of the analysed cases."""
        rng = self.rng
        analysed = {case.pk: case for case in cases if case.status == Case.Status.ANALYSED}
        threshold = float(version.manifest.get("confidence_threshold", 0.5))
        predictions: dict[int, list[Prediction]] = {pk: [] for pk in analysed}
        for image in images:
            case = analysed.get(image.case_id)
            if case is not None:
                predictions[case.pk].append(
                    self._prediction(image, version, case.created + timedelta(seconds=30))
                )
        Prediction.objects.bulk_create(
            [p for rows in predictions.values() for p in rows], batch_size=BATCH
        )
        CaseAnalysis.objects.bulk_create(
            [
                CaseAnalysis(case=case, model_version=version, created=case.created)
                for case in analysed.values()
            ],
            batch_size=BATCH,
        )
        results = []
        for pk, rows in predictions.items():
            # The case's answer by the product's own rule, from the predictions just made.
            answer = case_answer(rows, classes=version.classes, threshold=threshold)
            results.append(
                CaseResult(
                    case_id=pk,
                    model_version=version,
                    label=answer.label,
                    confidence=answer.confidence,
                    probabilities=answer.probabilities,
                    needs_review=answer.needs_review,
                    images_count=answer.images_count,
                    out_of_scope_count=answer.out_of_scope_count,
                    primary=True,
                    created=analysed[pk].created + timedelta(minutes=1),
                )
            )
        CaseResult.objects.bulk_create(results, batch_size=BATCH)
        reviewed = [r for r in results if rng.random() < self.shares["reviewed"]]
        reviews = Review.objects.bulk_create(
            [
                self._review(result, version, analysed[result.case_id].team_id)
                for result in reviewed
            ],
            batch_size=BATCH,
        )
        signed = [review for review in reviews if rng.random() < self.shares["signed_off"]]
        SignOff.objects.bulk_create(
            [
                SignOff(
                    case_id=review.case_id,
                    review=review,
                    reviewer=review.reviewer,
                    created=review.created + timedelta(minutes=5),
                )
                for review in signed
            ],
            batch_size=BATCH,
        )
        Case.objects.filter(pk__in=[review.case_id for review in signed]).update(
            status=Case.Status.REVIEWED
        )
        return {
            "predictions": sum(len(rows) for rows in predictions.values()),
            "case results": len(results),
            "verdicts": len(reviews),
            "sign-offs": len(signed),
        }

    def _prediction(self, image: SmearImage, version: ModelVersion, at: datetime) -> Prediction:
        rng = self.rng
        classes = list(version.classes)
        label = rng.choice(classes)
        confidence = rng.uniform(0.35, 0.99)
        rest = [rng.random() for _ in classes[1:]]
        spread = [(1 - confidence) * r / (sum(rest) or 1) for r in rest]
        others = iter(spread)
        probabilities = {c: confidence if c == label else next(others) for c in classes}
        out_of_scope = rng.random() < 0.02
        return Prediction(
            image=image,
            model_version=version,
            probabilities=probabilities,
            label=label,
            confidence=confidence,
            ood_score=rng.uniform(0.0, 1.0),
            out_of_scope=out_of_scope,
            inference_ms=rng.uniform(20, 80),
            worker_host="demo-seed",
            created=at,
            # Seeded rows have no image worth explaining: no heatmap task may chase them.
            heatmap_state=HeatmapState.IMPOSSIBLE,
            heatmap_reason="seeded demo data",
            heatmap_changed=at,
        )

    def _review(self, result: CaseResult, version: ModelVersion, team_id: int) -> Review:
        rng = self.rng
        # Where the model gave no subtype, no diagnosis agrees with it (as review_create).
        agreed = None if result.abstained else version.clinical_label(result.label)
        if agreed is not None and rng.random() < 0.85:
            diagnosis = agreed
        else:
            diagnosis = rng.choice(
                [d for d in [*settings.CLINICAL_DIAGNOSES, INCONCLUSIVE] if d != agreed]
            )
        return Review(
            case_id=result.case_id,
            reviewer=rng.choice(self.team_reviewers[team_id]),
            model_version=version,
            model_label=result.label,
            model_confidence=result.confidence,
            model_abstained=result.abstained,
            verdict=Review.Verdict.AGREE if diagnosis == agreed else Review.Verdict.OVERRIDE,
            diagnosis=diagnosis,
            comment="" if diagnosis == agreed else "Demo: the smear says otherwise.",
            # Seeded reviewers judged with the model's answer in view (never blinded).
            answer_shown_before=True,
            created=result.created + timedelta(hours=rng.randrange(1, 72)),
        )
