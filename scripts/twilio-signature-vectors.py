#!/usr/bin/env python3
"""Writes server/src/webhook/testdata/twilio_signature_vectors.json.

Each signature is computed by twilio-python's RequestValidator, an
implementation independent of ours (server/src/webhook/twilio_signature.rs).

    python3 -m venv .venv-twilio
    .venv-twilio/bin/pip install twilio==9.13.0
    .venv-twilio/bin/python scripts/twilio-signature-vectors.py

How RequestValidator.compute_signature(uri, params) reads params (9.13.0):
- names: sorted(set(params)); values of a name: params.getall(name) (aiohttp
  MultiDict), else params.getlist(name) (Django QueryDict), else [params[name]].
  A plain dict with a list value fails (a list is not hashable), so repeated
  keys are passed as a multidict.MultiDict (installed with twilio via aiohttp).
- each name's values are sorted(set(values)): sorted by value, and identical
  repeats are collapsed into one (asserted below; twilio-node does the same).
  Our rule follows it: by name, then by value, identical pairs signed once.
- the URI is used as given; validate() also tries it with the default port
  added and removed.
"""

import json
import pathlib
import sys
from urllib.parse import parse_qsl, urlencode

import twilio
from multidict import MultiDict
from twilio.request_validator import RequestValidator

OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "server/src/webhook/testdata/twilio_signature_vectors.json"
)
MADE_WITH = f"twilio-python {twilio.__version__} RequestValidator.compute_signature"

# A made-up token in Twilio's format (32 hex digits); not a real secret.
TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
STATUS = "https://example.com/webhooks/twilio/status"
INBOUND = "https://example.com/webhooks/twilio/messages"

SMS_STATUS = [
    ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
    ("SmsStatus", "delivered"),
    ("MessageStatus", "delivered"),
    ("To", "+393331234567"),
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("AccountSid", ACCOUNT),
    ("From", "+390212345678"),
    ("ApiVersion", "2010-04-01"),
]

# (name, token, url signed with, url we verify at, body pairs in posted order)
CASES = [
    (
        "twilio_published_example",
        "12345",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        None,
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ],
    ),
    ("default_port_443_signed_with_port", TOKEN,
     "https://example.com:443/webhooks/twilio/status", STATUS, SMS_STATUS),
    ("default_port_443_signed_without_port", TOKEN,
     STATUS, "https://example.com:443/webhooks/twilio/status", SMS_STATUS),
    ("default_port_80_signed_with_port", TOKEN,
     "http://example.com:80/webhooks/twilio/status",
     "http://example.com/webhooks/twilio/status", SMS_STATUS),
    ("default_port_80_signed_without_port", TOKEN,
     "http://example.com/webhooks/twilio/status",
     "http://example.com:80/webhooks/twilio/status", SMS_STATUS),
    (
        # To/ToCountry and From/FromCountry: sorting the concatenated
        # name+value strings (twilio-go) would order these differently.
        "whatsapp_status_to_and_from_prefix_country_names",
        TOKEN,
        STATUS,
        None,
        [
            ("ChannelPrefix", "whatsapp"),
            ("ApiVersion", "2010-04-01"),
            ("MessageStatus", "read"),
            ("SmsSid", "SM89abcdef0123456789abcdef01234567"),
            ("SmsStatus", "read"),
            ("ChannelInstallSid", "XE0123456789abcdef0123456789abcdef"),
            ("To", "whatsapp:+393331234567"),
            ("ToCountry", "IT"),
            ("From", "whatsapp:+14155238886"),
            ("FromCountry", "US"),
            ("MessageSid", "SM89abcdef0123456789abcdef01234567"),
            ("StructuredMessage", "false"),
            ("AccountSid", ACCOUNT),
            ("ChannelToAddress", "+39333123XXXX"),
        ],
    ),
    (
        "empty_error_code_and_body",
        TOKEN,
        STATUS,
        None,
        [
            ("ErrorCode", ""),
            ("MessageStatus", "sent"),
            ("MessageSid", "SMfedcba9876543210fedcba9876543210"),
            ("AccountSid", ACCOUNT),
            ("Body", ""),
            ("To", "+393331234567"),
        ],
    ),
    (
        # Tag=b before Tag=a in the body; signed in value order (a, then b).
        "repeated_key_signed_in_value_order",
        TOKEN,
        INBOUND,
        None,
        [
            ("MessageSid", "SM00112233445566778899aabbccddeeff"),
            ("Tag", "b"),
            ("AccountSid", ACCOUNT),
            ("Tag", "a"),
            ("Tag", "B"),
        ],
    ),
    (
        # Tag=x twice: python (and node) sign an identical pair once.
        "identical_repeats_signed_once",
        TOKEN,
        INBOUND,
        None,
        [
            ("MessageSid", "SM00112233445566778899aabbccddeeff"),
            ("Tag", "x"),
            ("AccountSid", ACCOUNT),
            ("Tag", "x"),
        ],
    ),
    (
        # Accents, an emoji and an em dash, percent-encoded as UTF-8; spaces as '+'.
        "whatsapp_inbound_utf8_body_and_profile_name",
        TOKEN,
        INBOUND,
        None,
        [
            ("SmsMessageSid", "SMa1b2c3d4e5f60718293a4b5c6d7e8f90"),
            ("NumMedia", "0"),
            ("ProfileName", "Niccolò"),
            ("MessageType", "text"),
            ("SmsSid", "SMa1b2c3d4e5f60718293a4b5c6d7e8f90"),
            ("WaId", "393331234567"),
            ("SmsStatus", "received"),
            ("Body", "Sì, richiamo domani 📞 — città"),
            ("To", "whatsapp:+14155238886"),
            ("NumSegments", "1"),
            ("MessageSid", "SMa1b2c3d4e5f60718293a4b5c6d7e8f90"),
            ("AccountSid", ACCOUNT),
            ("From", "whatsapp:+393331234567"),
            ("ApiVersion", "2010-04-01"),
        ],
    ),
    (
        # The query is signed byte for byte: %2F, '+' and an empty value stay as sent.
        "query_string_kept_raw",
        TOKEN,
        STATUS + "?tenant=acme%2Fmilano&note=a+b&empty=",
        None,
        SMS_STATUS,
    ),
]


def main():
    # Identical repeats collapse into one in twilio-python (see the docstring).
    v = RequestValidator(TOKEN)
    assert v.compute_signature(STATUS, MultiDict([("Tag", "x"), ("Tag", "x")])) == \
        v.compute_signature(STATUS, {"Tag": "x"})

    vectors = []
    for name, token, url, verify_url, pairs in CASES:
        verify_url = verify_url or url
        validator = RequestValidator(token)
        body = urlencode(pairs)  # quote_plus: UTF-8 percent-encoding, ' ' -> '+'
        # The body decodes back to exactly these pairs, in order, empties kept.
        assert parse_qsl(body, keep_blank_values=True, strict_parsing=True) == pairs
        signature = validator.compute_signature(url, MultiDict(pairs))
        # Python accepts the request at the URL we verify at, and at the signed one.
        assert validator.validate(verify_url, MultiDict(pairs), signature), name
        assert validator.validate(url, MultiDict(pairs), signature), name
        vectors.append({
            "name": name,
            "auth_token": token,
            "url": url,
            "verify_url": verify_url,
            "body": body,
            "signature": signature,
            "made_with": MADE_WITH,
        })

    # Twilio's published example (twilio.com/docs/usage/security), also with a plain dict.
    published = vectors[0]
    assert published["signature"] == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert RequestValidator("12345").compute_signature(
        published["url"], dict(CASES[0][4])) == published["signature"]

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors with {MADE_WITH} to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
