"""Seed N demo patients, each with one case and a few small generated images.

For trying the pages and measuring the case list at scale: 10,000 cases take
seconds, because rows go in with bulk_create and all images share a handful
of stored files (a demo row needs a real file to show, not a unique one).
"""

import io
import random
import uuid
from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from PIL import Image, ImageDraw

from accounts.models import Team, User
from cases.models import Case, Patient, SmearImage
from cases.uploads import image_clean

BATCH = 500
POOL = 8


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
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Command(BaseCommand):
    help = "Seed N demo patients, cases and images (bulk inserts; small generated images)."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int, help="How many patients (one case each).")
        parser.add_argument("--team", default="Haematology A", help="Team to seed into.")
        parser.add_argument("--images-per-case", type=int, default=2)
        parser.add_argument("--user", help="Username shown as the submitter of every case.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed, for repeatable data.")

    def handle(self, *args, count: int, team: str, images_per_case: int, **options):
        if count < 1 or not 0 <= images_per_case <= POOL:
            raise CommandError(f"count must be positive and --images-per-case 0 to {POOL}")
        user = None
        if options["user"]:
            user = User.objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        rng = random.Random(options["seed"])  # noqa: S311 - demo data, repeatable
        team_obj, _ = Team.objects.get_or_create(name=team)
        pool = [self._store(seed) for seed in range(images_per_case and POOL)]
        # A fresh tag per run keeps identifiers unique however often it is run.
        run = uuid.uuid4().hex[:8]
        now = timezone.now()
        statuses = [s for s in Case.Status.values if s != Case.Status.DRAFT]

        with transaction.atomic():
            patients = Patient.objects.bulk_create(
                [
                    Patient(
                        team=team_obj,
                        identifier=f"DEMO-{run}-{i:06d}",
                        sex=rng.choice(Patient.Sex.values),
                        year_of_birth=rng.randrange(1930, 2020),
                    )
                    for i in range(count)
                ],
                batch_size=BATCH,
            )
            cases = Case.objects.bulk_create(
                [
                    Case(
                        patient=patient,
                        team=team_obj,
                        submitted_by=user,
                        status=rng.choice(statuses),
                        specimen=rng.choice(Case.Specimen.values),
                        stain=rng.choice(Case.Stain.values),
                    )
                    for patient in patients
                ],
                batch_size=BATCH,
            )
            # `created` is set to now on insert; spread the cases over a year afterwards.
            for case in cases:
                case.created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
            Case.objects.bulk_update(cases, ["created"], batch_size=BATCH)
            SmearImage.objects.bulk_create(
                [
                    SmearImage(
                        case=case,
                        file=name,
                        thumbnail=name,
                        original_name=f"demo-{n + 1}.png",
                        sha256=clean.sha256,
                        width=clean.width,
                        height=clean.height,
                        format=clean.format,
                        size_bytes=len(clean.content),
                        uploaded_by=user,
                        status=SmearImage.Status.PENDING,
                    )
                    for case in cases
                    for n, (name, clean) in enumerate(rng.sample(pool, images_per_case))
                ],
                batch_size=BATCH,
            )
        self.stdout.write(
            f"Seeded {count} patients and cases with {count * images_per_case} images "
            f"in {team_obj}."
        )

    def _store(self, seed: int):
        data = _demo_smear(seed)
        clean = image_clean(
            io.BytesIO(data), name="demo.png", max_bytes=len(data), max_pixels=65536
        )
        name = f"smears/demo/{clean.sha256}.png"
        if not default_storage.exists(name):
            name = default_storage.save(name, ContentFile(clean.content))
        return name, clean
