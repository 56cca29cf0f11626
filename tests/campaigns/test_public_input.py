"""Public endpoints (Twilio webhooks, survey pages) take any input without a 500."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.campaigns.conftest import PUBLIC

text = st.text(max_size=80)
form_fields = st.dictionaries(
    st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "From", "To", "Body",
                     "AccountSid"]), text, max_size=6)
RELAXED = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


@RELAXED
@given(form=form_fields, query=st.sampled_from(["", "?message_id=1", "?message_id=x",
                                                "?message_id=99999999999999999999999"]),
       path=st.sampled_from(["/webhooks/twilio/status", "/webhooks/twilio/inbound"]))
def test_signed_webhooks_never_fail_on_odd_input(client, twilio, form, query, path):
    url = PUBLIC + path + query
    signature = RequestValidator(twilio.auth_token).compute_signature(url, form)
    r = client.post(path + query, data=form, headers={"X-Twilio-Signature": signature})
    assert r.status_code < 500, r.get_data(as_text=True)


@RELAXED
@given(token=st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                             blacklist_characters="/?#%\x00"),
                     min_size=1, max_size=60),
       score=text, comment=text)
def test_survey_pages_never_fail_on_odd_input(client, factory, token, score, comment):
    assert client.get(f"/s/{token}").status_code in (404, 410)
    r = client.post(f"/s/{token}", data={"score": score, "comment": comment})
    assert r.status_code in (400, 404, 410)
