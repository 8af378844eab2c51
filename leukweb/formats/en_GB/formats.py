"""One way to write a time, on every page and in the Django admin: 24-hour, with the zone
(TIME_ZONE), so a time read off a screen or a printed report is never ambiguous."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i T"
