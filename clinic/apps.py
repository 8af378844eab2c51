from django.apps import AppConfig


class ClinicConfig(AppConfig):
    """The pages and REST API that show a case with its analysis and its sign-off.

    They join three apps' records (cases, inference, reviews), so they sit above all
    three; the records, and the rules that change them, stay in those apps.
    """

    name = "clinic"
    verbose_name = "Case pages and API"
