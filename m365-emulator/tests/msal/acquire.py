"""Asks MSAL for Python, unchanged, for an app-only token the way its documentation shows.

Reads one JSON object on standard input:
  {"client_id", "authority", "scopes": [...], "client_credential": <as MSAL takes it>,
   "ca_bundle": <path of the PEM bundle to trust>}
and prints one JSON object: {"token_type", "access_token", "expires_in"} on success, else
{"error", "error_codes", "error_description"} as MSAL returns them, or {"exception"} when MSAL
raises instead.
"""

import json
import sys

import msal


def main():
    request = json.load(sys.stdin)
    try:
        app = msal.ConfidentialClientApplication(
            request["client_id"],
            client_credential=request["client_credential"],
            authority=request["authority"],
            instance_discovery=False,
            verify=request["ca_bundle"],
            token_cache=msal.TokenCache(),
        )
        result = app.acquire_token_for_client(scopes=request["scopes"])
    except Exception as error:  # reported to the test, which decides
        print(json.dumps({"exception": f"{type(error).__name__}: {error}"}))
        return
    keys = ("token_type", "access_token", "expires_in", "error", "error_codes", "error_description")
    print(json.dumps({key: result[key] for key in keys if key in result}))


if __name__ == "__main__":
    main()
