"""Standard Webhooks signing against the specification's own example, and the retry schedule."""

from __future__ import annotations

from centralino.api.webhooks import MAX_DELAY, retry_delay, sign
from centralino.config.webhooks import Webhook


def test_signature_matches_the_standard_webhooks_example():
    # the example of the Standard Webhooks specification (standardwebhooks.com)
    got = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
               b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_retries_back_off_exponentially_with_jitter_and_a_cap():
    hook = Webhook(url="https://crm.example.com/hook", secret="whsec_abcdefgh", retry_base=5.0)
    assert [retry_delay(hook, n, lambda: 0.5) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay(hook, 3, lambda: 0.0) == 10.0 and retry_delay(hook, 3, lambda: 1.0) == 30.0
    assert retry_delay(hook, 40, lambda: 0.5) == MAX_DELAY
