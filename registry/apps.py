from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The model registry's pages for administrators. The registry's records and writes
    are the inference app's; these pages sit above the reviews app because they show
    how often reviewers agreed with each version."""

    name = "registry"
    verbose_name = "Model registry"
