"""Signs a user in with MSAL for Python, unchanged, through the authorization code flow with
PKCE, the way its documentation shows for web apps.

Reads one JSON object on standard input:
  {"client_id", "client_secret", "authority", "scopes": [...], "redirect_uri", "ca_bundle",
   "username", "password"}
It calls initiate_auth_code_flow, GETs the auth_uri, fills in the sign-in form found there
(its action and hidden fields kept), POSTs it without following the redirect, takes the query of
the Location header and hands it to acquire_token_by_auth_code_flow. Prints one JSON object:
{"token_type", "id_token_claims", "scope", "flow_nonce"} on success, else {"error", "error_codes",
"error_description"} as MSAL returns them, or {"exception"} when something raises.
"""

import html.parser
import json
import sys
import urllib.parse

import msal
import requests


class SignInForm(html.parser.HTMLParser):
    """The first form of a page: its action and its input fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action")
            self.in_form = True
        elif tag == "input" and self.in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False


def main():
    request = json.load(sys.stdin)
    try:
        app = msal.ConfidentialClientApplication(
            request["client_id"],
            client_credential=request["client_secret"],
            authority=request["authority"],
            instance_discovery=False,
            verify=request["ca_bundle"],
            token_cache=msal.TokenCache(),
        )
        flow = app.initiate_auth_code_flow(
            request["scopes"], redirect_uri=request["redirect_uri"]
        )
        browser = requests.Session()
        browser.verify = request["ca_bundle"]
        page = browser.get(flow["auth_uri"], allow_redirects=False)
        page.raise_for_status()
        form = SignInForm()
        form.feed(page.text)
        if not form.action:
            raise RuntimeError("no sign-in form on the authorize page: " + page.text[:500])
        fields = dict(form.fields)
        fields["username"] = request["username"]
        fields["password"] = request["password"]
        answer = browser.post(form.action, data=fields, allow_redirects=False)
        location = answer.headers.get("Location")
        if answer.status_code != 302 or not location:
            raise RuntimeError(
                "the sign-in did not redirect (%d): %s" % (answer.status_code, answer.text[:500])
            )
        auth_response = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except Exception as error:  # reported to the test, which decides
        print(json.dumps({"exception": f"{type(error).__name__}: {error}"}))
        return
    keys = ("token_type", "id_token_claims", "scope", "error", "error_codes", "error_description")
    answer = {key: result[key] for key in keys if key in result}
    answer["flow_nonce"] = flow.get("nonce")
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
