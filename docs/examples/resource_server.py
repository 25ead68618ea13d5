#!/usr/bin/env python3
"""A resource server's check of a credledger access token, with PyJWT (pip install 'pyjwt[crypto]').

Usage: resource_server.py CREDLEDGER_URL ACCESS_TOKEN

The token comes from `credledger auth print-access-token` (or the OAuth2 token endpoint). The
check needs no shared secret: the signature is verified with the server's public keys (JWKS),
then the issuer, the audience and the expiry. It prints the token's subject, organization and
scopes as JSON, and exits 1 when the token is refused.
"""

import json
import sys
import urllib.request

import jwt


def verify(server: str, token: str) -> dict:
    with urllib.request.urlopen(f"{server}/.well-known/oauth-authorization-server") as answer:
        metadata = json.load(answer)
    signing_key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["EdDSA"],  # never whatever the token's header says
        issuer=metadata["issuer"],
        audience="credledger-api",
        leeway=30,
    )


if __name__ == "__main__":
    try:
        claims = verify(sys.argv[1].rstrip("/"), sys.argv[2])
    except jwt.PyJWTError as error:
        print(f"refused: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"sub": claims["sub"], "org": claims.get("org"), "scope": claims.get("scope")}))
