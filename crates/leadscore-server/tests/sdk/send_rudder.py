"""Sends events to leadscore with RudderStack's Python SDK (rudder-sdk-python), with its
defaults unchanged: a background queue, batches gzip-compressed, retries.

Environment: LEADSCORE_HOST (http://127.0.0.1:PORT), LEADSCORE_WRITE_KEY (an ingest key).
"""
import datetime
import os
import sys

from rudderstack.analytics import Client
from rudderstack.analytics.request import APIError, post

host = os.environ["LEADSCORE_HOST"]
client = Client(write_key=os.environ["LEADSCORE_WRITE_KEY"], host=host)
# RudderStack puts identify traits in context.traits, not at the top level.
client.identify("rudder-user", {"email": "rudder@example.com", "job_title": "CTO", "company_size": 250, "product_interest": "platform"})
client.page("rudder-user", name="Pricing", properties={"path": "/pricing", "url": "https://example.com/pricing"})
client.track("rudder-user", "Form Submitted", {"form": "quote"})
client.track(
    "rudder-user",
    "Webinar Attended",
    {"webinar": "scoring"},
    timestamp=datetime.datetime(2026, 1, 15, 10, 0, tzinfo=datetime.timezone.utc),
    message_id="rudder-webinar-1",
)
client.flush()

# A refused request, read the way the SDK reads every error answer (it once failed here
# with KeyError: 'code', because it reads `code` and `message` at the top level).
try:
    post("lsk_not_a_key", host, batch=[{"type": "track", "userId": "nobody", "event": "x"}])
except APIError as error:
    if error.status != 401 or error.code != "unauthorized" or not error.message:
        sys.exit(f"unexpected error reading: status={error.status} code={error.code!r} message={error.message!r}")
else:
    sys.exit("a request with an unknown write key was accepted")

client.shutdown()
print("rudder sdk: sent")
