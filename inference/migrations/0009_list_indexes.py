from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0008_prediction_heatmap_state'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='caseresult',
            index=models.Index(condition=models.Q(('primary', True)), fields=['-needs_review', 'confidence'], name='caseresult_queue_order'),
        ),
        migrations.AddIndex(
            model_name='prediction',
            index=models.Index(fields=['-created', '-id'], name='prediction_newest'),
        ),
        migrations.AddIndex(
            model_name='prediction',
            index=models.Index(fields=['model_version', '-created'], name='prediction_version_newest'),
        ),
    ]
