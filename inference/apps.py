from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and predictions"

    def ready(self) -> None:
        from cases.signals import case_submitted
        from inference.dispatch import case_submitted_receive

        case_submitted.connect(case_submitted_receive, dispatch_uid="inference-analysis")
