"""Test records, a factory per model the tests build (factory_boy), plus the few composite
records several test folders need: an analysed case as a worker leaves it, a stored heatmap."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import factory
from django.core.files.base import ContentFile
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Role, Team, User
from cases.models import Case, Patient, SmearImage
from inference.models import CaseResult, HeatmapState, ModelVersion, Prediction
from tests.helpers import persona_password

SUBTYPES = ["ALL", "AML", "CLL", "CML"]


def probabilities(label: str, confidence: float, classes=SUBTYPES) -> dict[str, float]:
    """``confidence`` on ``label``, the rest shared evenly by the other classes."""
    rest = (1 - confidence) / (len(classes) - 1)
    return {c: confidence if c == label else rest for c in classes}


class TeamFactory(factory.django.DjangoModelFactory[Team]):
    class Meta:
        model = Team
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class UserFactory(factory.django.DjangoModelFactory[User]):
    """A user with a role; ``teams=["Team A"]`` names teams, created when missing.

    The password is persona_password(username) unless given.
    """

    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.CLINICIAN
    is_superuser = factory.LazyAttribute(lambda o: o.role == Role.ADMIN)
    password = factory.PostGeneration(
        lambda user, create, value: user.set_password(value or persona_password(user.username))
    )

    # factory_boy calls this with the user it built, not with the factory.
    @factory.post_generation
    def teams(user: User, create: bool, names: list[str] | None) -> None:
        user.save()
        if names:
            user.teams.set([TeamFactory.create(name=name) for name in names])


def authenticator_for(user: User) -> TOTPDevice:
    """The user's confirmed authenticator app, made when they have none (as if enrolled)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test phone", confirmed=True)


class PatientFactory(factory.django.DjangoModelFactory[Patient]):
    class Meta:
        model = Patient
        django_get_or_create = ("team", "identifier")

    team = factory.SubFactory(TeamFactory, name="Team A")
    identifier = factory.Sequence(lambda n: f"P-{n:04d}")


class CaseFactory(factory.django.DjangoModelFactory[Case]):
    class Meta:
        model = Case

    patient = factory.SubFactory(PatientFactory)
    team = factory.SelfAttribute("patient.team")
    status = Case.Status.SUBMITTED


class SmearImageFactory(factory.django.DjangoModelFactory[SmearImage]):
    """A case's image row. With ``data`` (bytes) the file is really stored; without it
    the row names a file that does not exist, enough for pages that only list images."""

    class Meta:
        model = SmearImage

    class Params:
        data = None

    case = factory.SubFactory(CaseFactory)
    original_name = "field.png"
    file = factory.Maybe(
        "data",
        yes_declaration=factory.LazyAttribute(lambda o: ContentFile(o.data, name=o.original_name)),
        no_declaration=factory.LazyAttributeSequence(lambda o, n: f"smears/{o.case.pk}/{n}.png"),
    )
    sha256 = factory.LazyAttributeSequence(
        lambda o, n: hashlib.sha256(o.data).hexdigest() if o.data else f"{n:064d}"
    )
    width = 48
    height = 48
    format = "PNG"
    size_bytes = factory.LazyAttribute(lambda o: len(o.data) if o.data else 100)


class ModelVersionFactory(factory.django.DjangoModelFactory[ModelVersion]):
    class Meta:
        model = ModelVersion

    class Params:
        synthetic = False

    name = "cnn"
    version = "1"
    architecture = "tiny_cnn"
    classes = factory.LazyFunction(lambda: list(SUBTYPES))
    input_size = 32
    artifact = factory.LazyAttribute(lambda o: f"{o.name}-{o.version}")
    content_hash = factory.LazyAttribute(lambda o: f"sha256:{o.name}{o.version}")
    manifest = factory.LazyAttribute(
        lambda o: {"synthetic": o.synthetic, "heatmap_layer": "last_conv", "classes": o.classes}
    )
    report = factory.LazyFunction(dict)
    status = ModelVersion.Status.DEPLOYED


class PredictionFactory(factory.django.DjangoModelFactory[Prediction]):
    class Meta:
        model = Prediction

    class Params:
        with_heatmap = factory.Trait(
            heatmap=factory.django.FileField(data=b"\x89PNG-heatmap", filename="heat.png"),
            heatmap_state=HeatmapState.MADE,
        )

    image = factory.SubFactory(SmearImageFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    label = "AML"
    confidence = 0.91
    probabilities = factory.LazyAttribute(
        lambda o: {c: (o.confidence if c == o.label else 0.03) for c in o.model_version.classes}
    )
    inference_ms = 12.0
    worker_host = "test"


class CaseResultFactory(factory.django.DjangoModelFactory[CaseResult]):
    class Meta:
        model = CaseResult

    case = factory.SubFactory(CaseFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    label = "AML"
    confidence = 0.7
    probabilities = factory.LazyAttribute(
        lambda o: probabilities(o.label, o.confidence, o.model_version.classes)
    )
    needs_review = False
    images_count = factory.LazyAttribute(lambda o: o.case.images.count())
    primary = True


def analysed_case(
    team_name: str,
    identifier: str,
    version: ModelVersion,
    *,
    label: str = "AML",
    confidence: float = 0.9,
    needs_review: bool = False,
    age_days: int = 0,
    images: int = 1,
    status: str = Case.Status.ANALYSED,
    shadow: tuple[ModelVersion, str] | None = None,
    out_of_scope: bool = False,
) -> Case:
    """A case as a worker leaves it: images with predictions and the case result, for
    ``version`` (primary) and optionally a shadow version and its label; with
    ``out_of_scope`` the primary version's guard flagged every image."""
    patient = PatientFactory.create(team=TeamFactory.create(name=team_name), identifier=identifier)
    case = CaseFactory.create(patient=patient, status=status)
    if age_days:
        Case.objects.filter(pk=case.pk).update(created=timezone.now() - timedelta(days=age_days))
        case.refresh_from_db()
    answers = [(version, label, confidence, True)]
    if shadow:
        answers.append((shadow[0], shadow[1], 0.6, False))
    for _ in range(images):
        image = SmearImageFactory.create(case=case, status=SmearImage.Status.DONE, width=64)
        for model, answer, conf, primary in answers:
            PredictionFactory.create(
                image=image,
                model_version=model,
                label=answer,
                confidence=conf,
                probabilities=probabilities(answer, conf, model.classes),
                inference_ms=5.0,
                out_of_scope=out_of_scope and primary,
                ood_reason="blank" if out_of_scope and primary else "",
            )
    for model, answer, conf, primary in answers:
        CaseResultFactory.create(
            case=case,
            model_version=model,
            label=answer,
            confidence=conf,
            needs_review=needs_review if primary else False,
            images_count=images,
            out_of_scope_count=images if out_of_scope and primary else 0,
            primary=primary,
        )
    return case


def heatmap_attach(prediction: Prediction, data: bytes = b"\x89PNG-heatmap") -> Prediction:
    """Store a heatmap file for the prediction, as the worker's overlay step does."""
    prediction.heatmap_state = HeatmapState.MADE
    prediction.heatmap.save(f"{prediction.pk}.png", ContentFile(data), save=True)
    return prediction


def case_with_images(
    *blobs: bytes, team: str = "Team A", status: str = Case.Status.SUBMITTED
) -> Case:
    """A case of patient P-001 whose images are these bytes, really stored."""
    patient = PatientFactory.create(team=TeamFactory.create(name=team), identifier="P-001")
    case = CaseFactory.create(patient=patient, status=status)
    for data in blobs:
        SmearImageFactory.create(case=case, data=data)
    return case
