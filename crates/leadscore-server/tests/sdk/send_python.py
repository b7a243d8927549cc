"""Sends events to leadscore with Segment's official Python library, unchanged.

Environment: LEADSCORE_HOST (http://127.0.0.1:PORT), LEADSCORE_WRITE_KEY (an ingest key).
"""
import datetime
import os

from segment.analytics import Client

client = Client(
    write_key=os.environ["LEADSCORE_WRITE_KEY"],
    host=os.environ["LEADSCORE_HOST"],
    sync_mode=True,
    max_retries=1,
)
client.identify("py-user", {"email": "py@example.com", "job_title": "CTO", "company_size": 250, "product_interest": "platform"})
client.page("py-user", category=None, name="Pricing", properties={"path": "/pricing", "url": "https://example.com/pricing"})
client.track("py-user", "Form Submitted", {"form": "quote"})
client.track(
    "py-user",
    "Webinar Attended",
    {"webinar": "scoring"},
    timestamp=datetime.datetime(2026, 1, 15, 10, 0, tzinfo=datetime.timezone.utc),
    message_id="py-webinar-1",
)
client.flush()

print("python sdk: sent")
